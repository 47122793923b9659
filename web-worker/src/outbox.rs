//! The order frames leave in when some must wait for a signature: the browser's worker key is a
//! WebCrypto key that signs asynchronously, and the relay must still see the frames in the order
//! the [`Machine`](crate::machine::Machine) made them (a `result` after the `auth` it follows, a
//! heartbeat after the `result` before it). Pure: the glue sends, signs and says what happened.
//!
//! A frame for a connection that is gone is dropped without being signed; so is one being signed
//! when its connection goes.

use crate::machine::{ConnId, ToSign};
use starling_protocol::sign::Keypair;
use std::collections::VecDeque;

/// A frame for the relay: ready, or waiting for the worker key's signatures.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Sign(ToSign),
}

/// What the glue does next.
#[derive(Debug)]
pub enum Next {
    /// Send this text on the connection now.
    Send(ConnId, String),
    /// Sign this with the held key, then call [`Outbox::signed`]; nothing else leaves meanwhile.
    Sign(ConnId, ToSign),
}

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<(ConnId, Frame)>,
    /// The connection of the frame being signed.
    signing: Option<ConnId>,
}

impl Outbox {
    pub fn push(&mut self, conn: ConnId, frame: Frame) {
        self.queue.push_back((conn, frame));
    }

    /// The next frame to send or sign, in order, skipping those whose connection is not `open`.
    /// With a key in `memory` a frame is signed here and sent at once. `None` while a frame is
    /// being signed, or when there is nothing left.
    pub fn next(&mut self, open: impl Fn(ConnId) -> bool, memory: Option<&Keypair>) -> Option<Next> {
        if self.signing.is_some() {
            return None;
        }
        while let Some((conn, frame)) = self.queue.pop_front() {
            if !open(conn) {
                continue;
            }
            return Some(match (frame, memory) {
                (Frame::Text(text), _) => Next::Send(conn, text),
                (Frame::Sign(message), Some(key)) => Next::Send(conn, message.sign_with(key)),
                (Frame::Sign(message), None) => {
                    self.signing = Some(conn);
                    Next::Sign(conn, message)
                }
            });
        }
        None
    }

    /// The frame being signed is done (sent, or given up): the rest may go.
    pub fn signed(&mut self) {
        self.signing = None;
    }

    /// `conn` is gone: forgets its queued frames. True when its frame was being signed (the glue
    /// drops that signature).
    pub fn close(&mut self, conn: ConnId) -> bool {
        self.queue.retain(|(to, _)| *to != conn);
        let was_signing = self.signing == Some(conn);
        if was_signing {
            self.signing = None;
        }
        was_signing
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.signing.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests_support::auth_to_sign;
    use starling_protocol::worker::WorkerMessage;

    fn drain(outbox: &mut Outbox, open: &[ConnId], memory: Option<&Keypair>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(next) = outbox.next(|c| open.contains(&c), memory) {
            out.push(match next {
                Next::Send(conn, text) => format!("send {conn} {}", kind(&text)),
                Next::Sign(conn, _) => format!("sign {conn}"),
            });
        }
        out
    }

    fn kind(text: &str) -> &'static str {
        match serde_json::from_str::<WorkerMessage>(text) {
            Ok(WorkerMessage::Auth { .. }) => "auth",
            _ => text.strip_prefix("t").map_or("?", |_| "text"),
        }
    }

    #[test]
    fn frames_leave_in_order_and_wait_for_a_held_key() {
        let key = Keypair::from_seed([3; 32]);
        type Case = (&'static str, Vec<(ConnId, bool)>, Vec<ConnId>, bool, Vec<&'static str>);
        // (what, frames as (conn, needs signing), open connections, key in memory, what happens)
        let cases: Vec<Case> = vec![
            ("text goes at once", vec![(1, false), (1, false)], vec![1], false, vec!["send 1 text", "send 1 text"]),
            (
                "a held key blocks what follows",
                vec![(1, false), (1, true), (1, false)],
                vec![1],
                false,
                vec!["send 1 text", "sign 1"],
            ),
            (
                "a key in memory signs inline",
                vec![(1, true), (1, false)],
                vec![1],
                true,
                vec!["send 1 auth", "send 1 text"],
            ),
            (
                "a closed connection's frames are dropped, unsigned",
                vec![(1, true), (2, false)],
                vec![2],
                false,
                vec!["send 2 text"],
            ),
        ];
        for (what, frames, open, memory, want) in cases {
            let mut outbox = Outbox::default();
            for (conn, sign) in frames {
                outbox.push(conn, if sign { Frame::Sign(auth_to_sign(&key)) } else { Frame::Text("t".into()) });
            }
            assert_eq!(drain(&mut outbox, &open, memory.then_some(&key)), want, "{what}");
        }
    }

    #[test]
    fn after_a_signature_the_rest_follows_and_a_close_unblocks() {
        let key = Keypair::from_seed([3; 32]);
        let mut outbox = Outbox::default();
        outbox.push(1, Frame::Sign(auth_to_sign(&key)));
        outbox.push(1, Frame::Text("t1".into()));
        assert_eq!(drain(&mut outbox, &[1], None), ["sign 1"]);
        assert_eq!(drain(&mut outbox, &[1], None), Vec::<String>::new(), "nothing overtakes the signature");
        outbox.signed();
        assert_eq!(drain(&mut outbox, &[1], None), ["send 1 text"]);
        assert!(outbox.is_empty());

        // The connection goes while its frame is signed: the queue for it goes too, others stay.
        outbox.push(1, Frame::Sign(auth_to_sign(&key)));
        outbox.push(1, Frame::Text("t2".into()));
        outbox.push(2, Frame::Text("t3".into()));
        assert_eq!(drain(&mut outbox, &[1, 2], None), ["sign 1"]);
        assert!(outbox.close(1));
        assert!(!outbox.close(1));
        assert_eq!(drain(&mut outbox, &[2], None), ["send 2 text"]);
        assert!(outbox.is_empty());
    }
}

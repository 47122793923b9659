//! One WebSocket to the relay, its callbacks turned into [`Event`]s on the worker's channel,
//! tagged with the machine's connection id so a replaced socket's late events are ignored.

use super::Event;
use crate::machine::ConnId;
use futures_channel::mpsc::UnboundedSender;
use starling_protocol::limits::MAX_WS_FRAME_BYTES;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// What a socket reports.
#[derive(Debug)]
pub enum SocketEvent {
    Opened,
    Text(String),
    /// Closed, failed to open, or sent something we will not take; the sentence says which.
    Closed(String),
}

/// An open (or opening) socket. Dropping it detaches the callbacks and closes it.
#[derive(Debug)]
pub struct Socket {
    ws: WebSocket,
    /// Kept alive as long as the socket may call them.
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut()>,
}

impl Socket {
    pub fn open(conn: ConnId, url: &str, events: &UnboundedSender<Event>) -> Result<Socket, String> {
        let ws = WebSocket::new(url).map_err(|e| format!("cannot open {url}: {}", super::describe_js(&e)))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let emit = {
            let events = events.clone();
            // The receiver lives as long as the worker; a failed send means it is shutting down.
            move |event: SocketEvent| drop(events.unbounded_send(Event::Socket { conn, event }))
        };

        let on_open = Closure::<dyn FnMut()>::new({
            let emit = emit.clone();
            move || emit(SocketEvent::Opened)
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let emit = emit.clone();
            move |message: MessageEvent| {
                let data = message.data();
                let Some(text) = data.dyn_ref::<js_sys::JsString>() else {
                    // The protocol is JSON text frames only.
                    return emit(SocketEvent::Closed("the relay sent a binary frame".into()));
                };
                // UTF-16 units never outnumber UTF-8 bytes: over the limit here is over it for
                // sure, and the text is never copied into wasm memory.
                if text.length() as usize > MAX_WS_FRAME_BYTES {
                    return emit(SocketEvent::Closed(format!(
                        "the relay sent a frame over {MAX_WS_FRAME_BYTES} bytes"
                    )));
                }
                emit(SocketEvent::Text(String::from(text)));
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new({
            let emit = emit.clone();
            move |close: CloseEvent| {
                let reason = close.reason();
                let why = if reason.is_empty() {
                    format!("code {}", close.code())
                } else {
                    format!("code {}: {}", close.code(), reason.chars().take(123).collect::<String>())
                };
                emit(SocketEvent::Closed(why))
            }
        });
        // Browsers give no detail on socket errors (deliberately); a close event follows.
        let on_error = Closure::<dyn FnMut()>::new(move || emit(SocketEvent::Closed("socket error".into())));

        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_error: on_error })
    }

    /// Sends one text frame; a socket that is not open drops it (its close event is on the way).
    pub fn send(&self, text: &str) -> Result<(), String> {
        if self.ws.ready_state() != WebSocket::OPEN {
            return Err("the socket is not open".into());
        }
        self.ws.send_with_str(text).map_err(|e| super::describe_js(&e))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        // 1000: normal closure. Fails only on a bad code, which this is not.
        let _ = self.ws.close_with_code(1000);
    }
}

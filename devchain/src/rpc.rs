//! The JSON-RPC server: CometBFT's `status`, `abci_query`, `broadcast_tx_sync` and `tx` as
//! JSON-RPC 2.0 over `POST /`, and development-only methods: `dev_fund` (the faucet sends coins
//! to an address), `dev_deposit` (the faucet deposits into an escrow account) and `dev_advance`
//! (the clock jumps ahead, at most [`MAX_ADVANCE`] seconds a call).
//!
//! Bounds: a request body of at most 2 MiB, one call per request (no batches), and the chain
//! behind one lock, each call on a blocking thread (contract calls are CPU work). The faucet
//! pays at most [`MAX_GRANT`] per call; bind the server to loopback (the default).

use crate::{DevChain, tx::TxError};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most seconds `dev_advance` moves the clock in one call.
pub const MAX_ADVANCE: u64 = 30 * 24 * 3600;
/// Most the faucet pays out in one call.
pub const MAX_GRANT: u128 = 1_000_000_000_000;
const MAX_BODY: usize = 2 << 20;

pub type Shared = Arc<Mutex<DevChain>>;

/// The server's routes over a chain.
pub fn router(chain: Shared) -> Router {
    Router::new()
        .route("/", post(call))
        .route("/status", get(|State(chain): State<Shared>| async move { axum::Json(rpc_ok(status(&chain))) }))
        .route("/health", get(|| async { axum::Json(rpc_ok(json!({}))) }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(chain)
}

/// Serves `chain` on `listener` until `stop` resolves, producing an empty block every
/// `block_time` so the chain's clock moves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    chain: Shared,
    block_time: Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ticker = {
        let chain = chain.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(block_time);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner).tick();
            }
        })
    };
    let served = axum::serve(listener, router(chain)).with_graceful_shutdown(stop).await;
    ticker.abort();
    served
}

fn rpc_ok(result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": -1, "result": result})
}

fn status(chain: &Shared) -> Value {
    let chain = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    json!({
        "node_info": {"network": chain.chain_id(), "moniker": "starling-devchain", "version": "dev"},
        "sync_info": {"latest_block_height": chain.height().to_string(), "catching_up": false},
        "starling": {"contract": chain.contract().as_str(), "denom": chain.denom()},
    })
}

async fn call(
    State(chain): State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    // JSON only: a web page cannot send `application/json` across origins without a preflight
    // this server never answers, so a page the developer visits cannot drive the faucet.
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_body {
        return axum::Json(error(Value::Null, -32600, "Invalid Request", "the body must be application/json"));
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return axum::Json(error(Value::Null, -32700, "Parse error", &e.to_string())),
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let (Some(method), params) = (request.get("method").and_then(Value::as_str), request.get("params").cloned()) else {
        return axum::Json(error(id, -32600, "Invalid Request", "a call names its method"));
    };
    let method = method.to_owned();
    let params = params.unwrap_or(Value::Null);
    let answer = tokio::task::spawn_blocking(move || dispatch(&chain, &method, &params)).await;
    axum::Json(match answer {
        Ok(Ok(result)) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Ok(Err((code, message, data))) => error(id, code, message, &data),
        Err(e) => error(id, -32603, "Internal error", &e.to_string()),
    })
}

fn error(id: Value, code: i64, message: &str, data: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

type CallResult = Result<Value, (i64, &'static str, String)>;

fn invalid(data: impl Into<String>) -> (i64, &'static str, String) {
    (-32602, "Invalid params", data.into())
}

fn param<'a>(params: &'a Value, name: &str) -> Result<&'a str, (i64, &'static str, String)> {
    params.get(name).and_then(Value::as_str).ok_or_else(|| invalid(format!("{name} is required")))
}

fn dispatch(chain: &Shared, method: &str, params: &Value) -> CallResult {
    match method {
        "status" => Ok(status(chain)),
        "health" => Ok(json!({})),
        "abci_query" => {
            let path = param(params, "path")?;
            let data = params.get("data").and_then(Value::as_str).unwrap_or_default();
            let data = hex::decode(data.trim_start_matches("0x")).map_err(|e| invalid(format!("data: {e}")))?;
            let chain = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let answer = chain.query(path, &data);
            Ok(json!({"response": {
                "code": answer.code,
                "codespace": answer.codespace,
                "log": answer.log,
                "info": "",
                "index": "0",
                "key": null,
                "value": B64.encode(&answer.value),
                "proofOps": null,
                "height": chain.height().to_string(),
            }}))
        }
        "broadcast_tx_sync" => {
            let tx = B64.decode(param(params, "tx")?).map_err(|e| invalid(format!("tx: {e}")))?;
            let answer = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner).broadcast(&tx);
            Ok(json!({
                "code": answer.code,
                "codespace": answer.codespace,
                "log": answer.log,
                "data": "",
                "hash": hex::encode_upper(answer.hash),
            }))
        }
        "tx" => {
            let hash = B64.decode(param(params, "hash")?).map_err(|e| invalid(format!("hash: {e}")))?;
            let chain = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain
                .tx(&hash)
                .map(|record| record.to_json())
                .ok_or_else(|| (-32603, "Internal error", format!("tx ({}) not found", hex::encode_upper(&hash))))
        }
        "dev_advance" => {
            let seconds: u64 = param(params, "seconds")?.parse().map_err(|_| invalid("seconds: a whole number"))?;
            if seconds > MAX_ADVANCE {
                return Err(invalid(format!("seconds must be at most {MAX_ADVANCE}")));
            }
            let mut chain = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            chain.advance_time(seconds);
            Ok(json!({"height": chain.height().to_string(), "time": chain.time().to_string()}))
        }
        "dev_fund" | "dev_deposit" => {
            let amount: u128 = param(params, "amount")?.parse().map_err(|_| invalid("amount: a whole number"))?;
            if amount == 0 || amount > MAX_GRANT {
                return Err(invalid(format!("amount must be 1..={MAX_GRANT}")));
            }
            let mut chain = chain.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let done: Result<(), TxError> = if method == "dev_fund" {
                chain.faucet_send(param(params, "address")?, amount)
            } else {
                let account = hex::decode(param(params, "account")?)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| invalid("account: an ed25519 key as 64 hex digits"))?;
                chain.faucet_deposit(&account, amount)
            };
            done.map(|()| json!({"height": chain.height().to_string()})).map_err(|e| invalid(e.log))
        }
        other => Err((-32601, "Method not found", format!("{other} is not served by this development chain"))),
    }
}

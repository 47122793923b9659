//! Writes the contract's JSON schema (`cargo run -p starling-escrow --bin schema`).

use cosmwasm_schema::write_api;
use starling_escrow::msg::{ExecuteMsg, InstantiateMsg, QueryMsg};

fn main() {
    write_api! {
        instantiate: InstantiateMsg,
        execute: ExecuteMsg,
        query: QueryMsg,
    }
}

-- The embedded escrow ledger (relay/src/escrow/embedded.rs): the contract's storage, the bank's
-- balances, the block clock, and what the local faucet minted. Written only by the escrow. On
-- PostgreSQL it lives in the schema `ledger` of the relay database (the SQLite twin: ../sqlite).

CREATE TABLE ledger_kv (
    key   BYTEA PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Balances as decimal text: they are u128.
CREATE TABLE ledger_accounts (
    address TEXT PRIMARY KEY,
    balance TEXT NOT NULL
);

CREATE TABLE ledger_faucet (
    address TEXT PRIMARY KEY,
    amount  TEXT NOT NULL
);

CREATE TABLE ledger_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

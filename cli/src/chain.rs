//! `starling chain`: the local development chain (see `starling-devchain`), a relay's chain key,
//! and the development faucet. A real deployment uses a real chain's node, keys and funds.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ChainCommand {
    /// Run a development chain with the escrow contract instantiated (state in memory).
    Serve(ServeArgs),
    /// Create (if missing) a secp256k1 chain key for a relay and print its address.
    Key(KeyArgs),
    /// Development faucet: send coins to a chain address, or deposit into an escrow account.
    Fund(FundArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the RPC (port 0 picks a free port; the bound address is printed first).
    #[arg(long, default_value = "127.0.0.1:26657")]
    listen: SocketAddr,
    #[arg(long, default_value = "starling-dev-1")]
    chain_id: String,
    /// The escrow's own relay: a chain address (`starling chain key` prints one).
    #[arg(long)]
    relay: String,
    /// That relay's public URL, listed in the registry.
    #[arg(long)]
    relay_endpoint: Option<String>,
    /// Genesis balances: `ADDRESS=AMOUNT`, repeated.
    #[arg(long, value_parser = parse_grant)]
    fund: Vec<(String, u128)>,
    /// Milliseconds between empty blocks (the chain's clock).
    #[arg(long, default_value_t = 1_000)]
    block_ms: u64,
    /// The escrow contract's wasm (default: target/contracts/starling_escrow.wasm).
    #[arg(long)]
    contract: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The key file (64 hex digits, readable by its owner only).
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct FundArgs {
    /// The development chain's RPC URL.
    #[arg(long, default_value = "http://127.0.0.1:26657")]
    chain: String,
    /// A chain address to send coins to.
    #[arg(long, conflicts_with = "account", required_unless_present = "account")]
    address: Option<String>,
    /// An escrow account (a client's or a worker owner's ed25519 key, 64 hex digits) to deposit into.
    #[arg(long)]
    account: Option<starling_protocol::PublicKey>,
    #[arg(long)]
    amount: u128,
}

fn parse_grant(s: &str) -> Result<(String, u128), String> {
    let (address, amount) = s.split_once('=').ok_or("ADDRESS=AMOUNT")?;
    Ok((address.to_owned(), amount.parse().map_err(|_| format!("{amount} is not a whole number"))?))
}

pub async fn run(args: ChainArgs) -> Result<()> {
    match args.command {
        ChainCommand::Serve(args) => serve(args).await,
        ChainCommand::Key(args) => {
            println!("{}", key(&args.file)?);
            Ok(())
        }
        ChainCommand::Fund(args) => {
            let (method, params) = match (&args.address, &args.account) {
                (Some(address), _) => ("dev_fund", json!({"address": address, "amount": args.amount.to_string()})),
                (None, Some(account)) => {
                    ("dev_deposit", json!({"account": account.to_hex(), "amount": args.amount.to_string()}))
                }
                (None, None) => bail!("--address or --account"),
            };
            let node = starling_relay::escrow::chain::Node::new(&args.chain)?;
            node.call(method, params).await.context("the development chain refused")?;
            println!(
                "funded {}",
                args.address.clone().unwrap_or_else(|| args.account.map(|a| a.to_hex()).unwrap_or_default())
            );
            Ok(())
        }
    }
}

/// Reads the relay chain key in `path`, or creates it; returns its address on the dev chain.
pub fn key(path: &Path) -> Result<String> {
    if !path.exists() {
        crate::write_secret(path)?;
    }
    let key = starling_relay::escrow::chain::read_key(path)?;
    Ok(key.public_key().account_id(starling_devchain::PREFIX).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let wasm_path = match &args.contract {
        Some(p) => p.clone(),
        None => crate::locate(&["target/contracts/starling_escrow.wasm"])
            .context("the escrow contract is not built: run scripts/build-contract.sh (or pass --contract)")?,
    };
    let wasm = std::fs::read(&wasm_path).with_context(|| format!("reading {}", wasm_path.display()))?;
    let mut genesis = starling_devchain::Genesis::new(&args.chain_id, &args.relay);
    genesis.accounts = args.fund.clone();
    genesis.escrow.relay_endpoint = args.relay_endpoint.clone();
    let chain = starling_devchain::DevChain::new(&wasm, genesis)?;
    let contract = chain.contract().to_string();
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read these lines.
    println!("starling devchain listening on http://{addr}");
    println!("chain-id {}", args.chain_id);
    println!("contract {contract}");
    eprintln!("a development chain: one process, state in memory, not a network; see README");
    let shared = Arc::new(Mutex::new(chain));
    starling_devchain::rpc::serve(listener, shared, Duration::from_millis(args.block_ms.max(10)), crate::ctrl_c())
        .await?;
    Ok(())
}

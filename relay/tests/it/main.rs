//! The relay's integration tests: one binary, so the relay and its dependencies are linked once.
//! `stalls` (timing under load) and `fd_limit` (changes the process's limits) keep binaries of
//! their own so that nothing else runs beside them.

mod bad_input;
mod blob_uploads;
mod cross_origin;
mod driver;
mod fuzz_http;
mod metrics;
mod postgres;
mod secrecy;
mod support;

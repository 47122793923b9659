//! Pieces several pages share: charts, progress bars, form fields and notices.

pub mod chart;
pub mod field;
pub mod notice;
pub mod progress;

//! placeholder, written by the transaction work

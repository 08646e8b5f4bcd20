//! (filled in by the security work)

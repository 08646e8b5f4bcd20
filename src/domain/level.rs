use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Operator level: L1 operator, L2 engineer, L3 admin. Ordered so that `L3 > L1`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Level {
    L1,
    L2,
    L3,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::L1, Level::L2, Level::L3];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "L1" => Ok(Level::L1),
            "L2" => Ok(Level::L2),
            "L3" => Ok(Level::L3),
            _ => Err(format!("unknown level '{s}': use L1, L2 or L3")),
        }
    }
}

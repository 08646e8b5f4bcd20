//! Who is acting: an operator's name and level, as the server authenticated them.

use crate::domain::level::Level;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Operator {
    pub name: String,
    pub level: Level,
}

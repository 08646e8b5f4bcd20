use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Operator level: observer (reads, changes nothing), L1 operator, L2 engineer, L3 admin. Ordered
/// so that `L3 > L2 > L1 > Observer`: every "at least L2" check keeps observers out by itself.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Level {
    /// Watches the queue, the calendar and the verifications (an incident commander's manager,
    /// a wall screen); every write answers 403 "observers cannot …" (see [`Act`]).
    #[serde(rename = "observer")]
    Observer,
    L1,
    L2,
    L3,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Observer, Level::L1, Level::L2, Level::L3];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Observer => "observer",
            Level::L1 => "L1",
            Level::L2 => "L2",
            Level::L3 => "L3",
        }
    }

    /// Whether this level reads only. The API refuses every write of an observer at its edge;
    /// the services ask this again through [`Act::may`].
    pub fn is_observer(self) -> bool {
        self == Level::Observer
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
            "OBSERVER" => Ok(Level::Observer),
            "L1" => Ok(Level::L1),
            "L2" => Ok(Level::L2),
            "L3" => Ok(Level::L3),
            _ => Err(format!("unknown level '{s}': use observer, L1, L2 or L3")),
        }
    }
}

/// Something that changes state, named for the refusal an observer gets. One vocabulary for the
/// API edge (which refuses every non-GET request of an observer, `server/api/observers.rs`) and
/// the services (which refuse again if ever called with one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Request,
    Preview,
    Approve,
    Deny,
    Withdraw,
    Rollback,
    Outcome,
    Freeze,
    RemoveFreeze,
    Pause,
    Resume,
    DeclareIncident,
    CloseIncident,
    Cancel,
    CalendarFeed,
    /// A write the table above does not name yet (a new endpoint): still refused.
    Other,
}

impl Act {
    /// What the act is, and who to ask instead.
    fn words(self) -> (&'static str, &'static str) {
        const ANY: &str = "an L1, L2 or L3 operator";
        match self {
            Act::Request => ("request changes", ANY),
            Act::Preview => ("preview changes", ANY),
            Act::Approve => ("approve changes", "an L2 or L3"),
            Act::Deny => ("deny changes", "an L2 or L3"),
            Act::Withdraw => ("withdraw changes", "the change's requester"),
            Act::Rollback => ("roll back changes", ANY),
            Act::Outcome => (
                "record verification outcomes",
                "the change's requester, an approver, or an L2 or L3",
            ),
            Act::Freeze => ("announce freezes", "an L3"),
            Act::RemoveFreeze => ("remove freezes", "an L3"),
            Act::Pause => ("pause changes", "an L2 or L3"),
            Act::Resume => ("resume changes", "an L2 or L3"),
            Act::DeclareIncident => ("declare incidents", ANY),
            Act::CloseIncident => ("close incidents", "the commander or an L2 or L3"),
            Act::Cancel => (
                "cancel scheduled changes",
                "the change's requester or an L2 or L3",
            ),
            Act::CalendarFeed => ("create or revoke calendar feed URLs", ANY),
            Act::Other => ("change anything", ANY),
        }
    }

    /// "observers cannot approve changes; ask an L2 or L3 (an observer reads everything and
    /// changes nothing)".
    pub fn observer_refusal(self) -> String {
        let (what, ask) = self.words();
        format!(
            "observers cannot {what}; ask {ask} (an observer reads everything and changes nothing)"
        )
    }

    /// Ok unless `level` is an observer, who may take no act at all.
    pub fn may(self, level: Level) -> Result<(), String> {
        if level.is_observer() {
            Err(self.observer_refusal())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_is_below_l1_and_round_trips() {
        assert!(Level::Observer < Level::L1 && Level::L1 < Level::L2 && Level::L2 < Level::L3);
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{level}\""));
            assert_eq!(serde_json::from_str::<Level>(&json).unwrap(), level);
        }
        assert_eq!("Observer".parse::<Level>(), Ok(Level::Observer));
        assert!(
            "L4".parse::<Level>()
                .unwrap_err()
                .contains("observer, L1, L2 or L3")
        );
    }

    #[test]
    fn only_observers_are_refused() {
        assert_eq!(
            Act::Approve.may(Level::Observer).unwrap_err(),
            "observers cannot approve changes; ask an L2 or L3 (an observer reads everything and \
             changes nothing)"
        );
        for level in [Level::L1, Level::L2, Level::L3] {
            assert_eq!(Act::Request.may(level), Ok(()));
        }
    }
}

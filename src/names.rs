//! Closed sets of names: [`named_enum!`] gives a fieldless enum the names it is
//! known by in config files, JSON, the CLI and the API — `ALL`, `as_str`, `Display`
//! and a case-insensitive `FromStr` whose error lists the valid names
//! ([`ParseNameError`]) — so every such enum (job statuses, alert states,
//! severities, rule kinds, log levels, ...) reads and fails the same way.

/// A string that names none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}` (valid: {valid})")]
pub struct ParseNameError {
    /// What was being parsed ("severity", "job status", ...).
    pub what: &'static str,
    /// What was given.
    pub given: String,
    /// The valid names, comma-separated.
    pub valid: String,
}

impl ParseNameError {
    #[doc(hidden)]
    pub fn new(what: &'static str, given: &str, valid: impl Iterator<Item = &'static str>) -> Self {
        Self {
            what,
            given: given.to_owned(),
            valid: valid.collect::<Vec<_>>().join(", "),
        }
    }
}

/// `ALL`, `as_str`, `Display` and `FromStr` (case-insensitive, with an error that
/// lists the valid names) for a fieldless enum whose serde names are given here.
/// `Display` pads, so `{:<5}` lines names up.
macro_rules! named_enum {
    (@unit $variant:ident) => { () };
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: [Self; <[()]>::len(&[$(named_enum!(@unit $variant)),+])] = [$(Self::$variant),+];

            /// The name used in config files, JSON and the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        /// Compares with a name, as JSON and the API spell it.
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::names::ParseNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| {
                        $crate::names::ParseNameError::new($what, s, Self::ALL.iter().copied().map(Self::as_str))
                    })
            }
        }
    };
}

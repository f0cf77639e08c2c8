//! What redaction finds: the entity types, their markers, and the set a
//! deployment turns on (`[privacy] redact = [...]`).

use std::collections::BTreeSet;
use std::fmt;

/// A kind of sensitive span. Its name is its marker (`[card]`) and its
/// `type` in the JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    /// Payment card number (13–19 digits, Luhn-valid, or read in card context).
    Card,
    /// Card security code, in context.
    Cvv,
    /// Card expiry date, in context.
    Expiry,
    /// US social security number.
    Ssn,
    /// Date of birth, in context.
    Dob,
    /// Bank account number, in context.
    Account,
    /// Bank routing number (or sort code), in context.
    Routing,
    /// PIN, in context.
    Pin,
    Phone,
    Email,
    /// Digits held in a partial (or an alert's evidence) because they might
    /// still become a card number; a final says what they were.
    Digits,
}

impl Entity {
    /// The types a deployment can turn on or off (every one but [`Entity::Digits`],
    /// which goes with `card`).
    pub const CONFIGURABLE: [Entity; 10] = [
        Self::Card,
        Self::Cvv,
        Self::Expiry,
        Self::Ssn,
        Self::Dob,
        Self::Account,
        Self::Routing,
        Self::Pin,
        Self::Phone,
        Self::Email,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::Cvv => "cvv",
            Self::Expiry => "expiry",
            Self::Ssn => "ssn",
            Self::Dob => "dob",
            Self::Account => "account",
            Self::Routing => "routing",
            Self::Pin => "pin",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Digits => "digits",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The entity types to redact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entities(BTreeSet<Entity>);

impl Default for Entities {
    /// All of them.
    fn default() -> Self {
        Self(Entity::CONFIGURABLE.into_iter().collect())
    }
}

impl Entities {
    pub fn none() -> Self {
        Self(BTreeSet::new())
    }

    /// From configured names; an unknown name is an error that lists the known ones.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> anyhow::Result<Self> {
        let mut set = BTreeSet::new();
        for name in names {
            let name = name.as_ref();
            let entity = Entity::CONFIGURABLE
                .into_iter()
                .find(|e| e.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Entity::CONFIGURABLE.iter().map(|e| e.name()).collect();
                    anyhow::anyhow!("unknown entity type {name:?} to redact (known: {})", known.join(", "))
                })?;
            set.insert(entity);
        }
        Ok(Self(set))
    }

    pub fn contains(&self, entity: Entity) -> bool {
        match entity {
            Entity::Digits => self.0.contains(&Entity::Card),
            e => self.0.contains(&e),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_are_refused() {
        let set = Entities::parse(&["card", "email"]).unwrap();
        assert!(set.contains(Entity::Card) && set.contains(Entity::Digits) && !set.contains(Entity::Ssn));
        let err = Entities::parse(&["card", "creditcard"]).unwrap_err().to_string();
        assert!(
            err.contains("\"creditcard\"") && err.contains("known: card, cvv"),
            "{err}"
        );
        assert!(Entity::CONFIGURABLE.iter().all(|e| Entities::default().contains(*e)));
    }
}

//! DLP policy: one action per entity or category.
//!
//! Resolution order for an entity: the entity override, then its category,
//! then the built-in default (secrets block, financial and national IDs
//! redact, contact and network log).
//!
//! JSON shape (both maps optional):
//! ```json
//! {"categories": {"contact": "redact"}, "entities": {"IP_ADDRESS": "off"}}
//! ```

use crate::entity::{Action, Category, Entity};
use crate::error::DlpError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A (possibly partial) DLP policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Per-category actions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<Category, Action>,
    /// Per-entity actions; these beat the category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entities: BTreeMap<Entity, Action>,
}

impl Policy {
    /// The built-in defaults (an empty policy resolves to them).
    pub fn default_policy() -> Self {
        Self::default()
    }

    /// Parse a policy from JSON.
    pub fn from_json(s: &str) -> Result<Self, DlpError> {
        serde_json::from_str(s).map_err(|e| DlpError::InvalidPolicy(e.to_string()))
    }

    /// Builder: set a category action.
    pub fn with_category(mut self, c: Category, a: Action) -> Self {
        self.categories.insert(c, a);
        self
    }

    /// Builder: set an entity action.
    pub fn with_entity(mut self, e: Entity, a: Action) -> Self {
        self.entities.insert(e, a);
        self
    }

    /// Effective action for an entity.
    pub fn action_for(&self, entity: Entity) -> Action {
        if let Some(a) = self.entities.get(&entity) {
            return *a;
        }
        self.action_for_category(entity.category())
    }

    /// The action of a category's entities that have no entity entry.
    pub fn action_for_category(&self, cat: Category) -> Action {
        self.categories
            .get(&cat)
            .copied()
            .unwrap_or_else(|| cat.default_action())
    }

    /// Layer `overlay` (e.g. a key's policy) over `self` (e.g. the tenant's):
    /// every entry present in the overlay wins. An entity entry at any layer
    /// still beats a category entry at any layer, because resolution checks
    /// entities first.
    pub fn merge(&self, overlay: &Policy) -> Policy {
        let mut out = self.clone();
        for (c, a) in &overlay.categories {
            out.categories.insert(*c, *a);
        }
        for (e, a) in &overlay.entities {
            out.entities.insert(*e, *a);
        }
        // A category override in the overlay must beat an entity entry that only
        // came from the base layer; otherwise a key saying "contact: off" would be
        // undone by a tenant saying "EMAIL: log".
        for (c, a) in &overlay.categories {
            for e in Entity::ALL {
                if e.category() == *c
                    && !overlay.entities.contains_key(&e)
                    && self.entities.contains_key(&e)
                {
                    out.entities.insert(e, *a);
                }
            }
        }
        out
    }

    /// True when some entity resolves to a non-`off` action.
    pub fn any_enabled(&self) -> bool {
        Entity::ALL
            .iter()
            .any(|e| self.action_for(*e) != Action::Off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let p = Policy::default();
        assert_eq!(p.action_for(Entity::OpenaiKey), Action::Block);
        assert_eq!(p.action_for(Entity::CreditCard), Action::Redact);
        assert_eq!(p.action_for(Entity::JpMyNumber), Action::Redact);
        assert_eq!(p.action_for(Entity::Email), Action::Log);
        assert_eq!(p.action_for(Entity::IpAddress), Action::Log);
    }

    #[test]
    fn entity_beats_category() {
        let p =
            Policy::from_json(r#"{"categories":{"contact":"redact"},"entities":{"EMAIL":"off"}}"#)
                .unwrap();
        assert_eq!(p.action_for(Entity::Email), Action::Off);
        assert_eq!(p.action_for(Entity::Phone), Action::Redact);
    }

    #[test]
    fn merge_key_over_tenant() {
        let tenant = Policy::from_json(
            r#"{"categories":{"contact":"redact"},"entities":{"EMAIL":"log","PASSWORD":"redact"}}"#,
        )
        .unwrap();
        let key = Policy::from_json(
            r#"{"categories":{"contact":"off"},"entities":{"PASSWORD":"block"}}"#,
        )
        .unwrap();
        let m = tenant.merge(&key);
        assert_eq!(m.action_for(Entity::Email), Action::Off);
        assert_eq!(m.action_for(Entity::Phone), Action::Off);
        assert_eq!(m.action_for(Entity::Password), Action::Block);
        assert_eq!(m.action_for(Entity::CreditCard), Action::Redact);
    }

    #[test]
    fn rejects_unknown() {
        assert!(Policy::from_json(r#"{"entities":{"NOPE":"off"}}"#).is_err());
        assert!(Policy::from_json(r#"{"categories":{"secret":"maybe"}}"#).is_err());
    }
}

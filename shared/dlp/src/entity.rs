//! Entity, category and action vocabularies. The names are part of the contract
//! (audit lines, policies, CLI output), so they are spelled out explicitly.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Kind of sensitive value a finding refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Entity {
    // personal data
    CreditCard,
    Iban,
    UsSsn,
    Email,
    Phone,
    JpMyNumber,
    JpCorporateNumber,
    JpPostalCode,
    IpAddress,
    // secrets
    AwsAccessKey,
    AwsSecretKey,
    PrivateKey,
    Jwt,
    OpenaiKey,
    AnthropicKey,
    GithubToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    TollgateKey,
    Password,
    /// A password in URL userinfo (`postgresql://app:PASS@db`, `amqp://guest:PASS@mq`).
    UrlCredential,
    /// Input the scanner cannot read (images, audio, PDFs, token-id arrays): reported once
    /// per item so a policy can refuse it (default, as a secret: block) or let it through.
    OpaqueInput,
}

/// Policy category an entity belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Secret,
    Financial,
    NationalId,
    Contact,
    Network,
}

/// What to do when an entity is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Disabled: the entity is not reported at all.
    Off,
    /// Reported (counted in the audit line) but the text is left alone.
    Log,
    /// Replaced by a typed numbered placeholder such as `[EMAIL_1]`.
    Redact,
    /// The whole request is refused.
    Block,
}

impl Entity {
    /// Every entity, in a stable order.
    pub const ALL: [Entity; 23] = [
        Entity::CreditCard,
        Entity::Iban,
        Entity::UsSsn,
        Entity::Email,
        Entity::Phone,
        Entity::JpMyNumber,
        Entity::JpCorporateNumber,
        Entity::JpPostalCode,
        Entity::IpAddress,
        Entity::AwsAccessKey,
        Entity::AwsSecretKey,
        Entity::PrivateKey,
        Entity::Jwt,
        Entity::OpenaiKey,
        Entity::AnthropicKey,
        Entity::GithubToken,
        Entity::SlackToken,
        Entity::StripeKey,
        Entity::GoogleApiKey,
        Entity::TollgateKey,
        Entity::Password,
        Entity::UrlCredential,
        Entity::OpaqueInput,
    ];

    /// Contract name, e.g. `CREDIT_CARD`.
    pub const fn name(self) -> &'static str {
        match self {
            Entity::CreditCard => "CREDIT_CARD",
            Entity::Iban => "IBAN",
            Entity::UsSsn => "US_SSN",
            Entity::Email => "EMAIL",
            Entity::Phone => "PHONE",
            Entity::JpMyNumber => "JP_MY_NUMBER",
            Entity::JpCorporateNumber => "JP_CORPORATE_NUMBER",
            Entity::JpPostalCode => "JP_POSTAL_CODE",
            Entity::IpAddress => "IP_ADDRESS",
            Entity::AwsAccessKey => "AWS_ACCESS_KEY",
            Entity::AwsSecretKey => "AWS_SECRET_KEY",
            Entity::PrivateKey => "PRIVATE_KEY",
            Entity::Jwt => "JWT",
            Entity::OpenaiKey => "OPENAI_KEY",
            Entity::AnthropicKey => "ANTHROPIC_KEY",
            Entity::GithubToken => "GITHUB_TOKEN",
            Entity::SlackToken => "SLACK_TOKEN",
            Entity::StripeKey => "STRIPE_KEY",
            Entity::GoogleApiKey => "GOOGLE_API_KEY",
            Entity::TollgateKey => "TOLLGATE_KEY",
            Entity::Password => "PASSWORD",
            Entity::UrlCredential => "URL_CREDENTIAL",
            Entity::OpaqueInput => "OPAQUE_INPUT",
        }
    }

    /// The category used for policy defaults.
    pub const fn category(self) -> Category {
        match self {
            Entity::CreditCard | Entity::Iban => Category::Financial,
            Entity::UsSsn | Entity::JpMyNumber | Entity::JpCorporateNumber => Category::NationalId,
            Entity::Email | Entity::Phone | Entity::JpPostalCode => Category::Contact,
            Entity::IpAddress => Category::Network,
            Entity::AwsAccessKey
            | Entity::AwsSecretKey
            | Entity::PrivateKey
            | Entity::Jwt
            | Entity::OpenaiKey
            | Entity::AnthropicKey
            | Entity::GithubToken
            | Entity::SlackToken
            | Entity::StripeKey
            | Entity::GoogleApiKey
            | Entity::TollgateKey
            | Entity::Password
            | Entity::UrlCredential
            | Entity::OpaqueInput => Category::Secret,
        }
    }

    /// True for entities in the `secret` category.
    pub const fn is_secret(self) -> bool {
        matches!(self.category(), Category::Secret)
    }

    /// Overlap-resolution priority: higher wins when two candidates overlap.
    pub(crate) const fn priority(self) -> u8 {
        match self.category() {
            Category::Secret => 5,
            Category::Financial => 4,
            Category::NationalId => 3,
            Category::Contact => 2,
            Category::Network => 1,
        }
    }
}

impl Category {
    /// Contract name, e.g. `national_id`.
    pub const fn name(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::Financial => "financial",
            Category::NationalId => "national_id",
            Category::Contact => "contact",
            Category::Network => "network",
        }
    }

    /// Built-in default action of the category.
    pub const fn default_action(self) -> Action {
        match self {
            Category::Secret => Action::Block,
            Category::Financial | Category::NationalId => Action::Redact,
            Category::Contact | Category::Network => Action::Log,
        }
    }
}

impl Action {
    /// Contract name, e.g. `redact`.
    pub const fn name(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for parsing an unknown entity / category / action name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name: {0}")]
pub struct UnknownName(pub String);

impl FromStr for Entity {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Entity::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

impl FromStr for Category {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Category::Secret,
            Category::Financial,
            Category::NationalId,
            Category::Contact,
            Category::Network,
        ]
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

impl FromStr for Action {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Action::Off, Action::Log, Action::Redact, Action::Block]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

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
    /// A street address: Japanese (prefecture, municipality, chōme/banchi/gō, building
    /// and room) or an unambiguous English one (number, street, suffix, unit or city line).
    StreetAddress,
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
    /// Hugging Face user access token (`hf_`) or organization API token (`api_org_`).
    HuggingfaceToken,
    /// Azure OpenAI / Azure AI services key (84-character `JQQJ9` format, or 32 hex next to an Azure name).
    AzureOpenaiKey,
    /// Groq API key (`gsk_`).
    GroqKey,
    /// Cohere API key (40 characters next to a Cohere name).
    CohereKey,
    /// Mistral API key (32 characters next to a Mistral name).
    MistralKey,
    /// xAI API key (`xai-`).
    XaiKey,
    /// DeepSeek API key (`sk-` + 32 lower-case letters and digits).
    DeepseekKey,
    /// Perplexity API key (`pplx-`).
    PerplexityKey,
    /// OpenRouter API key (`sk-or-v1-`).
    OpenrouterKey,
    /// Replicate API token (`r8_`).
    ReplicateToken,
    /// Pinecone API key (`pcsk_`, or a UUID next to a Pinecone name).
    PineconeKey,
    /// LangSmith API key (`lsv2_pt_` / `lsv2_sk_`).
    LangsmithKey,
    /// Amazon Bedrock API key (long-term `ABSK…`, short-term `bedrock-api-key-…`).
    AwsBedrockKey,
    /// GitLab token (`glpat-`, `gldt-`, `glrt-`, … and runner registration tokens).
    GitlabToken,
    /// npm access token (`npm_`).
    NpmToken,
    /// PyPI API token (`pypi-` macaroon for pypi.org / test.pypi.org).
    PypiToken,
    /// Twilio API key SID (`SK` + 32 hex) or auth token next to a Twilio name.
    TwilioKey,
    /// SendGrid API key (`SG.` + 22 + `.` + 43).
    SendgridKey,
    /// Databricks personal access token (`dapi` + 32 hex).
    DatabricksToken,
    /// Supabase access token (`sbp_`) or secret API key (`sb_secret_`).
    SupabaseKey,
    /// Vercel access token (24 characters next to a Vercel name).
    VercelToken,
    /// Sentry user (`sntryu_`) or organization (`sntrys_`) auth token.
    SentryToken,
    /// Telegram bot token (`<bot id>:A…`).
    TelegramBotToken,
    /// Azure AD / Entra ID client secret (`…Q~…`).
    AzureClientSecret,
    /// Slack, Discord or Microsoft Teams incoming-webhook URL (posting needs nothing else).
    WebhookUrl,
    /// A high-entropy value assigned to a key-like name (`api_key = …`, `Authorization: Bearer …`, `curl -u`).
    GenericSecret,
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
    pub const ALL: [Entity; 50] = [
        Entity::CreditCard,
        Entity::Iban,
        Entity::UsSsn,
        Entity::Email,
        Entity::Phone,
        Entity::JpMyNumber,
        Entity::JpCorporateNumber,
        Entity::JpPostalCode,
        Entity::IpAddress,
        Entity::StreetAddress,
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
        Entity::HuggingfaceToken,
        Entity::AzureOpenaiKey,
        Entity::GroqKey,
        Entity::CohereKey,
        Entity::MistralKey,
        Entity::XaiKey,
        Entity::DeepseekKey,
        Entity::PerplexityKey,
        Entity::OpenrouterKey,
        Entity::ReplicateToken,
        Entity::PineconeKey,
        Entity::LangsmithKey,
        Entity::AwsBedrockKey,
        Entity::GitlabToken,
        Entity::NpmToken,
        Entity::PypiToken,
        Entity::TwilioKey,
        Entity::SendgridKey,
        Entity::DatabricksToken,
        Entity::SupabaseKey,
        Entity::VercelToken,
        Entity::SentryToken,
        Entity::TelegramBotToken,
        Entity::AzureClientSecret,
        Entity::WebhookUrl,
        Entity::GenericSecret,
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
            Entity::StreetAddress => "STREET_ADDRESS",
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
            Entity::HuggingfaceToken => "HUGGINGFACE_TOKEN",
            Entity::AzureOpenaiKey => "AZURE_OPENAI_KEY",
            Entity::GroqKey => "GROQ_KEY",
            Entity::CohereKey => "COHERE_KEY",
            Entity::MistralKey => "MISTRAL_KEY",
            Entity::XaiKey => "XAI_KEY",
            Entity::DeepseekKey => "DEEPSEEK_KEY",
            Entity::PerplexityKey => "PERPLEXITY_KEY",
            Entity::OpenrouterKey => "OPENROUTER_KEY",
            Entity::ReplicateToken => "REPLICATE_TOKEN",
            Entity::PineconeKey => "PINECONE_KEY",
            Entity::LangsmithKey => "LANGSMITH_KEY",
            Entity::AwsBedrockKey => "AWS_BEDROCK_KEY",
            Entity::GitlabToken => "GITLAB_TOKEN",
            Entity::NpmToken => "NPM_TOKEN",
            Entity::PypiToken => "PYPI_TOKEN",
            Entity::TwilioKey => "TWILIO_KEY",
            Entity::SendgridKey => "SENDGRID_KEY",
            Entity::DatabricksToken => "DATABRICKS_TOKEN",
            Entity::SupabaseKey => "SUPABASE_KEY",
            Entity::VercelToken => "VERCEL_TOKEN",
            Entity::SentryToken => "SENTRY_TOKEN",
            Entity::TelegramBotToken => "TELEGRAM_BOT_TOKEN",
            Entity::AzureClientSecret => "AZURE_CLIENT_SECRET",
            Entity::WebhookUrl => "WEBHOOK_URL",
            Entity::GenericSecret => "GENERIC_SECRET",
            Entity::OpaqueInput => "OPAQUE_INPUT",
        }
    }

    /// The category used for policy defaults.
    pub const fn category(self) -> Category {
        match self {
            Entity::CreditCard | Entity::Iban => Category::Financial,
            Entity::UsSsn | Entity::JpMyNumber | Entity::JpCorporateNumber => Category::NationalId,
            Entity::Email | Entity::Phone | Entity::JpPostalCode | Entity::StreetAddress => {
                Category::Contact
            }
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
            | Entity::HuggingfaceToken
            | Entity::AzureOpenaiKey
            | Entity::GroqKey
            | Entity::CohereKey
            | Entity::MistralKey
            | Entity::XaiKey
            | Entity::DeepseekKey
            | Entity::PerplexityKey
            | Entity::OpenrouterKey
            | Entity::ReplicateToken
            | Entity::PineconeKey
            | Entity::LangsmithKey
            | Entity::AwsBedrockKey
            | Entity::GitlabToken
            | Entity::NpmToken
            | Entity::PypiToken
            | Entity::TwilioKey
            | Entity::SendgridKey
            | Entity::DatabricksToken
            | Entity::SupabaseKey
            | Entity::VercelToken
            | Entity::SentryToken
            | Entity::TelegramBotToken
            | Entity::AzureClientSecret
            | Entity::WebhookUrl
            | Entity::GenericSecret
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

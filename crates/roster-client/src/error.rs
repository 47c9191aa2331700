//! The error of every fallible call (client-sdk.md §3, "Errors").

use std::sync::Arc;

use roster_model::ErrorCode;

/// Why a call failed, or why a save is not confirmed yet (`SaveOutcome::Queued`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RosterError {
    /// Rejected locally before sending, with the server's limits and formats (people.md §3, §8);
    /// nothing was changed or stored. `field` is the JSON path the server would name.
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },
    /// The server answered with the error envelope; `code` is its `messageId`
    /// (e.g. `USER_MERGE_INTERRUPTED`, see [`RosterError::api_code`]).
    #[error("the server answered {http_status} {code}: {text}")]
    Api {
        http_status: u16,
        code: String,
        text: String,
    },
    /// A non-2xx answer without an envelope (e.g. a 5xx `{}`, or a 3xx: redirects are not followed).
    #[error("the server answered HTTP {status}")]
    Http { status: u16 },
    /// Connection failure, timeout, TLS error or a malformed response.
    #[error("network error: {0}")]
    Network(String),
    /// The call is not allowed while a depersonalization is pending (client-sdk.md §9.3).
    #[error("a depersonalization is pending")]
    DepersonalizationPending,
    /// `depersonalize_installation` with the own pushRegId (use `depersonalize`).
    #[error("the current installation cannot be logged out remotely; use depersonalize()")]
    CannotDepersonalizeCurrentInstallation,
    /// The server answered `NO_REGISTRATION`; recovery has started (client-sdk.md §11).
    #[error("the server no longer knows this installation; it registers again")]
    RegistrationLost,
    /// The JWT supplier's token is not a structurally valid SDK JWT (client-sdk.md §14).
    #[error("the JWT from the supplier is malformed")]
    JwtStructureInvalid,
    /// The JWT supplier's token has expired (client-sdk.md §14).
    #[error("the JWT from the supplier has expired")]
    JwtExpired,
    /// Reading or writing the state file failed (client-sdk.md §5).
    #[error("storage error: {0}")]
    Storage(Arc<std::io::Error>),
    /// Another live client holds the storage directory.
    #[error("another client holds the storage directory")]
    StorageLocked,
    /// The state file was written by a newer SDK (higher `schemaVersion`); it is left alone.
    #[error("the state file was written by a newer version of the SDK")]
    StorageIncompatible,
    /// The client was shut down.
    #[error("the client was shut down")]
    Shutdown,
}

impl RosterError {
    /// The server's error code, when this is an [`RosterError::Api`] with a code Roster knows.
    pub fn api_code(&self) -> Option<ErrorCode> {
        match self {
            RosterError::Api { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }

    /// Whether this is an [`RosterError::Api`] with the given wire code.
    pub fn is_api(&self, code: &str) -> bool {
        matches!(self, RosterError::Api { code: c, .. } if c == code)
    }

    /// A local validation error from an `ApiError` of roster-model, whose text is
    /// `"<path>: <reason>"` for `REQUEST_FORMAT_INVALID` (phone and email errors carry no path,
    /// so the caller passes the field).
    pub(crate) fn from_model(e: roster_model::ApiError, field: Option<&str>) -> RosterError {
        match field {
            Some(f) => RosterError::Validation {
                field: f.to_string(),
                reason: e.text,
            },
            None => match e.text.split_once(": ") {
                Some((path, reason)) => RosterError::Validation {
                    field: path.to_string(),
                    reason: reason.to_string(),
                },
                None => RosterError::Validation {
                    field: String::new(),
                    reason: e.text,
                },
            },
        }
    }

    /// A description for logs without personal data (error texts of the server may quote an
    /// email address or a phone number; conventions.md: never log them).
    pub(crate) fn log_summary(&self) -> String {
        match self {
            RosterError::Validation { field, .. } => format!("validation error in {field}"),
            RosterError::Api { http_status, code, .. } => format!("{http_status} {code}"),
            other => other.to_string(),
        }
    }

    /// A validation error for `field`.
    pub(crate) fn validation(field: impl Into<String>, reason: impl Into<String>) -> RosterError {
        RosterError::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A storage error from an I/O error.
    pub(crate) fn storage(e: std::io::Error) -> RosterError {
        RosterError::Storage(Arc::new(e))
    }
}

/// `Result` with [`RosterError`].
pub type Result<T, E = RosterError> = std::result::Result<T, E>;

//! The error codes of the mobile API (mobile-api.md §3.2) and of the management API
//! (management-api.md §2), and the envelope they travel in.

use serde::Serialize;

/// An error code of mobile-api.md §3.2 or management-api.md §2; each has exactly one HTTP
/// status. The two APIs share the person-data codes; the others belong to one API only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    RequestFormatInvalid,
    EmailInvalid,
    PhoneInvalid,
    UserIdentityInvalid,
    AppCodeMissing,
    InvalidApplicationCode,
    JwtInvalid,
    ForbiddenInstallation,
    UserDataRestricted,
    NoRegistration,
    ResourceNotFound,
    MethodNotAllowed,
    UserMergeInterrupted,
    AmbiguousPersonalizeCandidates,
    PersonalizationImpossible,
    RequestTooLarge,
    TooManyRequests,
    // Management API only (management-api.md §2).
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    MergeNotReversible,
    MergeReversalConflict,
    LastAdminKey,
    IdempotencyKeyInProgress,
    PreconditionFailed,
    IdempotencyKeyReused,
    /// A transient server fault: answered as 5xx with the body `{}`.
    ServiceUnavailable,
    /// An unexpected server fault: answered as 500 with the body `{}`.
    Internal,
}

impl ErrorCode {
    /// The wire spelling of the code (`messageId`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RequestFormatInvalid => "REQUEST_FORMAT_INVALID",
            ErrorCode::EmailInvalid => "EMAIL_INVALID",
            ErrorCode::PhoneInvalid => "PHONE_INVALID",
            ErrorCode::UserIdentityInvalid => "USER_IDENTITY_INVALID",
            ErrorCode::AppCodeMissing => "APP_CODE_MISSING",
            ErrorCode::InvalidApplicationCode => "INVALID_APPLICATION_CODE",
            ErrorCode::JwtInvalid => "JWT_INVALID",
            ErrorCode::ForbiddenInstallation => "FORBIDDEN_INSTALLATION",
            ErrorCode::UserDataRestricted => "USER_DATA_RESTRICTED",
            ErrorCode::NoRegistration => "NO_REGISTRATION",
            ErrorCode::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::UserMergeInterrupted => "USER_MERGE_INTERRUPTED",
            ErrorCode::AmbiguousPersonalizeCandidates => "AMBIGUOUS_PERSONALIZE_CANDIDATES",
            ErrorCode::PersonalizationImpossible => "PERSONALIZATION_IMPOSSIBLE",
            ErrorCode::RequestTooLarge => "REQUEST_TOO_LARGE",
            ErrorCode::TooManyRequests => "TOO_MANY_REQUESTS",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::MergeNotReversible => "MERGE_NOT_REVERSIBLE",
            ErrorCode::MergeReversalConflict => "MERGE_REVERSAL_CONFLICT",
            ErrorCode::LastAdminKey => "LAST_ADMIN_KEY",
            ErrorCode::IdempotencyKeyInProgress => "IDEMPOTENCY_KEY_IN_PROGRESS",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// Parses the wire spelling back into a code (used by the client SDK).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ALL_CODES.iter().copied().find(|c| c.as_str() == s)
    }

    /// The HTTP status that carries this code (mobile-api.md §3.2).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::RequestFormatInvalid
            | ErrorCode::EmailInvalid
            | ErrorCode::PhoneInvalid
            | ErrorCode::UserIdentityInvalid
            | ErrorCode::BadRequest => 400,
            ErrorCode::AppCodeMissing
            | ErrorCode::InvalidApplicationCode
            | ErrorCode::JwtInvalid
            | ErrorCode::Unauthorized => 401,
            ErrorCode::ForbiddenInstallation | ErrorCode::UserDataRestricted | ErrorCode::Forbidden => 403,
            ErrorCode::NoRegistration | ErrorCode::ResourceNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UserMergeInterrupted
            | ErrorCode::AmbiguousPersonalizeCandidates
            | ErrorCode::PersonalizationImpossible
            | ErrorCode::AlreadyExists
            | ErrorCode::Conflict
            | ErrorCode::MergeNotReversible
            | ErrorCode::MergeReversalConflict
            | ErrorCode::LastAdminKey
            | ErrorCode::IdempotencyKeyInProgress => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether the response is a transient server fault (body `{}`, mobile-api.md §3.1).
    pub fn is_server_fault(self) -> bool {
        self.http_status() >= 500
    }
}

const ALL_CODES: &[ErrorCode] = &[
    ErrorCode::RequestFormatInvalid,
    ErrorCode::EmailInvalid,
    ErrorCode::PhoneInvalid,
    ErrorCode::UserIdentityInvalid,
    ErrorCode::AppCodeMissing,
    ErrorCode::InvalidApplicationCode,
    ErrorCode::JwtInvalid,
    ErrorCode::ForbiddenInstallation,
    ErrorCode::UserDataRestricted,
    ErrorCode::NoRegistration,
    ErrorCode::ResourceNotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::UserMergeInterrupted,
    ErrorCode::AmbiguousPersonalizeCandidates,
    ErrorCode::PersonalizationImpossible,
    ErrorCode::RequestTooLarge,
    ErrorCode::TooManyRequests,
    ErrorCode::BadRequest,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::AlreadyExists,
    ErrorCode::Conflict,
    ErrorCode::MergeNotReversible,
    ErrorCode::MergeReversalConflict,
    ErrorCode::LastAdminKey,
    ErrorCode::IdempotencyKeyInProgress,
    ErrorCode::PreconditionFailed,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::ServiceUnavailable,
    ErrorCode::Internal,
];

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected request: a code plus a human-readable English text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {text}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub text: String,
    /// The JSON path of the field at fault, when one field is (the management API reports it in
    /// `validationErrors`; the mobile API only in `text`).
    pub path: Option<String>,
}

impl ApiError {
    /// Builds an error with the given code and text.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        ApiError {
            code,
            text: text.into(),
            path: None,
        }
    }

    /// `REQUEST_FORMAT_INVALID` naming the JSON path of the field at fault.
    pub fn format(path: &str, reason: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorCode::RequestFormatInvalid, format!("{path}: {reason}")).at(path)
    }

    /// The same error, recording the JSON path of the field at fault.
    pub fn at(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// The response body: the envelope, or `{}` for server faults (mobile-api.md §3.1).
    pub fn body(&self) -> Vec<u8> {
        if self.code.is_server_fault() {
            return b"{}".to_vec();
        }
        serde_json::to_vec(&Envelope::new(self.code.as_str(), &self.text)).expect("the envelope always serialises")
    }
}

/// `{"requestError":{"serviceException":{"messageId":…,"text":…}}}`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub request_error: RequestError,
}

/// The `requestError` member of the envelope.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestError {
    pub service_exception: ServiceException,
}

/// The `serviceException` member of the envelope.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceException {
    pub message_id: String,
    pub text: String,
}

impl Envelope {
    /// An envelope for a code and text.
    pub fn new(code: &str, text: &str) -> Self {
        Envelope {
            request_error: RequestError {
                service_exception: ServiceException {
                    message_id: code.to_string(),
                    text: text.to_string(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_byte_exact() {
        let e = ApiError::new(ErrorCode::NoRegistration, "Unknown push registration");
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"requestError":{"serviceException":{"messageId":"NO_REGISTRATION","text":"Unknown push registration"}}}"#
        );
        assert_eq!(ApiError::new(ErrorCode::ServiceUnavailable, "db").body(), b"{}");
    }

    #[test]
    fn codes_round_trip() {
        for c in ALL_CODES {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
        }
    }
}

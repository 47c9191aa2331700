//! Test keys and identities shared by the stand-ins and the tests that talk to them.
//!
//! The keys were generated once with `openssl genpkey` for tests only; they protect nothing and
//! must never be configured for a real provider.

/// Apple team id of the test APNs key.
pub const APNS_TEAM_ID: &str = "ABCDE12345";
/// Key id of the test APNs key.
pub const APNS_KEY_ID: &str = "FGHIJ67890";
/// Bundle id (`apns-topic`) the APNs stand-in accepts by default.
pub const APNS_TOPIC: &str = "com.example.roster";
/// The test APNs `.p8` key: PKCS#8, P-256.
pub const APNS_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/apns-test-key.p8");
/// Public half of [`APNS_PRIVATE_KEY_PEM`] (SPKI PEM): what the APNs stand-in verifies with.
pub const APNS_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/apns-test-key.pub.pem");
/// Another P-256 key: tokens signed with it are `InvalidProviderToken` for the stand-in.
pub const APNS_OTHER_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/apns-other-test-key.p8");
/// A P-384 key: parses as PEM but cannot make ES256 tokens.
pub const P384_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/p384-test-key.p8");

/// Firebase project id of the test service account.
pub const FCM_PROJECT_ID: &str = "roster-test";
/// `client_email` of the test service account.
pub const FCM_CLIENT_EMAIL: &str = "push@roster-test.iam.gserviceaccount.com";
/// `private_key_id` of the test service account.
pub const FCM_PRIVATE_KEY_ID: &str = "roster-test-key-1";
/// The test service account key: RSA 2048, PKCS#8.
pub const FCM_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/fcm-test-key.pem");
/// Public half of [`FCM_PRIVATE_KEY_PEM`] (SPKI PEM): what the FCM stand-in verifies with.
pub const FCM_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/fcm-test-key.pub.pem");

/// A complete Google service-account JSON object for the test key, with `token_uri` as given.
pub fn service_account(token_uri: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "service_account",
        "project_id": FCM_PROJECT_ID,
        "private_key_id": FCM_PRIVATE_KEY_ID,
        "private_key": FCM_PRIVATE_KEY_PEM,
        "client_email": FCM_CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
}

/// Huawei app id of the test HMS credentials.
pub const HMS_APP_ID: &str = "101234567";
/// OAuth client id of the test HMS credentials (Huawei uses the app id).
pub const HMS_CLIENT_ID: &str = "101234567";
/// OAuth client secret of the test HMS credentials.
pub const HMS_CLIENT_SECRET: &str = "roster-test-hms-client-secret";

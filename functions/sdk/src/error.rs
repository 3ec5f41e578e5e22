use crate::Response;

/// A failed request: a status and a message, answered as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: u16,
    message: String,
}

impl Error {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is wrong (a bad query value, say); the caller can fix it.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_response(self) -> Response {
        crate::json(self.status, &serde_json::json!({ "error": self.message }))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// Runs a handler's result down to a response: what both servers do with it.
pub fn respond(result: crate::Result) -> Response {
    result.unwrap_or_else(Error::into_response)
}

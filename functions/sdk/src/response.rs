use crate::Response;

/// A JSON response with the given status.
pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("serialising a JSON value cannot fail");
    build(status, "application/json", body)
}

/// A `text/plain` response with the given status.
pub fn text(status: u16, body: impl Into<String>) -> Response {
    build(
        status,
        "text/plain; charset=utf-8",
        body.into().into_bytes(),
    )
}

fn build(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sets_status_type_and_body() {
        let r = json(201, &serde_json::json!({"a": 1}));
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(&r.body()[..], br#"{"a":1}"#);
    }

    #[test]
    fn error_becomes_json_with_its_status() {
        let r = crate::Error::bad_request("rounds must be a number").into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(&r.body()[..], br#"{"error":"rounds must be a number"}"#);
    }
}

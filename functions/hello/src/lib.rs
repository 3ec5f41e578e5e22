//! The seed's handler: a constant JSON greeting. The cheapest possible request, so what
//! it measures is the cost of the host itself.

use sdk::{Request, Result};

pub async fn handle(_request: Request) -> Result {
    Ok(sdk::json(
        200,
        &serde_json::json!({ "message": "Hello World!" }),
    ))
}

sdk::export!(handle);

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn answers_the_seed_json() {
        let r = super::handle(sdk::Request::default()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(&r.body()[..], br#"{"message":"Hello World!"}"#);
    }
}

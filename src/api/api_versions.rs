//! ApiVersions (key 18): the versions table, and the v0 fallback for clients newer than us.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use super::response_buf::ResponseBuf;
use super::{versions, Outcome, RequestContext};

fn api_versions() -> Vec<ApiVersion> {
    versions::advertised()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(_ctx: &RequestContext<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_versions())
}

/// A client asked with a version newer than ours: answer in v0 (header and body) with
/// UNSUPPORTED_VERSION and our ApiVersions range; the client retries with our max.
pub fn unsupported_version_response(correlation_id: i32, out: &mut ResponseBuf) -> Outcome {
    let range = versions::supported(ApiKey::ApiVersions).unwrap_or(versions::Range { min: 0, max: 0 });
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(range.min)
            .with_max_version(range.max)]);
    let encoded = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out, 0)
        .and_then(|()| body.encode(out, 0));
    match encoded {
        Ok(()) => Outcome::Respond,
        Err(_) => Outcome::Close,
    }
}

//! The two HTTP providers: Geolocation-API positioning (cells and WiFi APs
//! POSTed as JSON) and Nominatim-compatible reverse geocoding.
//!
//! These only speak HTTP and read answers. Timeouts, the breaker, the
//! concurrency limit and the counters wrap them in `mod.rs`, so every
//! provider gets the same treatment.
//!
//! `Ok(None)` means the provider answered and knows nothing there (it is
//! cached and does not count against the breaker); `Err` means the provider
//! failed.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::{CellQuery, Fix, FixSource, GeoError, Language, Radio};

pub(crate) const GEOLOCATION: &str = "geolocation";
pub(crate) const REVERSE: &str = "reverse";

/// Answers are a few hundred bytes; anything much larger is not one.
const MAX_ANSWER: usize = 256 * 1024;

/// One connection pool for both providers.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, GeoError> {
    reqwest::Client::builder()
        // Nominatim's usage policy requires an identifying User-Agent.
        .user_agent(concat!("badge-ingest/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        // A backstop: `mod.rs` bounds each call with the same timeout.
        .timeout(timeout + Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| GeoError::Http {
            provider: "client",
            source: e,
        })
}

pub(crate) struct GeolocationClient {
    http: reqwest::Client,
    /// With `?key=` already added, so the key is encoded once.
    url: Url,
}

impl GeolocationClient {
    pub(crate) fn new(http: reqwest::Client, url: &str, key: &str) -> Result<Self, GeoError> {
        let mut url = parse_url(GEOLOCATION, url)?;
        if !key.is_empty() {
            url.query_pairs_mut().append_pair("key", key);
        }
        Ok(Self { http, url })
    }

    pub(crate) async fn locate(&self, query: &CellQuery) -> Result<Option<Fix>, GeoError> {
        let body = GeolocateRequest::from_query(query);
        let response = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| http_error(GEOLOCATION, e))?;
        // The Geolocation API's "notFound".
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = read_answer(GEOLOCATION, response).await?;
        let answer: GeolocateAnswer =
            serde_json::from_slice(&bytes).map_err(|e| GeoError::BadAnswer {
                provider: GEOLOCATION,
                reason: e.to_string(),
            })?;
        let (lat, lon) = (answer.location.lat, answer.location.lng);
        if !valid_position(lat, lon) || !answer.accuracy.is_finite() || answer.accuracy < 0.0 {
            return Err(GeoError::BadAnswer {
                provider: GEOLOCATION,
                reason: format!("position {lat}, {lon} ± {} m", answer.accuracy),
            });
        }
        Ok(Some(Fix {
            lat,
            lon,
            accuracy_m: answer.accuracy,
            // WiFi, when sent, dominates the provider's answer.
            source: if query.wifi.is_empty() {
                FixSource::Cell
            } else {
                FixSource::Wifi
            },
        }))
    }
}

pub(crate) struct ReverseClient {
    http: reqwest::Client,
    url: Url,
}

impl ReverseClient {
    pub(crate) fn new(http: reqwest::Client, url: &str) -> Result<Self, GeoError> {
        Ok(Self {
            http,
            url: parse_url(REVERSE, url)?,
        })
    }

    /// `lat`/`lon` arrive already rounded to the cache's grid, and are sent
    /// at that precision so a cached answer is exactly what was asked.
    pub(crate) async fn address(
        &self,
        lat: f64,
        lon: f64,
        lang: Language,
    ) -> Result<Option<String>, GeoError> {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("format", "jsonv2")
            .append_pair("lat", &format!("{lat:.4}"))
            .append_pair("lon", &format!("{lon:.4}"))
            .append_pair("accept-language", lang.code());
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http_error(REVERSE, e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = read_answer(REVERSE, response).await?;
        let answer: ReverseAnswer =
            serde_json::from_slice(&bytes).map_err(|e| GeoError::BadAnswer {
                provider: REVERSE,
                reason: e.to_string(),
            })?;
        // Nominatim answers 200 `{"error":"Unable to geocode"}` at sea.
        Ok(answer
            .display_name
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty()))
    }
}

fn parse_url(provider: &'static str, url: &str) -> Result<Url, GeoError> {
    Url::parse(url).map_err(|e| GeoError::BadUrl {
        provider,
        reason: e.to_string(),
    })
}

/// reqwest puts the URL in its errors, and the geolocation URL holds the key.
fn http_error(provider: &'static str, e: reqwest::Error) -> GeoError {
    GeoError::Http {
        provider,
        source: e.without_url(),
    }
}

async fn read_answer(
    provider: &'static str,
    mut response: reqwest::Response,
) -> Result<Vec<u8>, GeoError> {
    let status = response.status();
    if !status.is_success() {
        return Err(GeoError::Status {
            provider,
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_error(provider, e))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(GeoError::BadAnswer {
                provider,
                reason: format!("answer over {MAX_ANSWER} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

/// The request body of the widely used Geolocation API (Google's and the
/// many services compatible with it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GeolocateRequest {
    home_mobile_country_code: u16,
    home_mobile_network_code: u16,
    radio_type: &'static str,
    consider_ip: bool,
    cell_towers: Vec<CellTowerJson>,
    wifi_access_points: Vec<WifiJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CellTowerJson {
    cell_id: u64,
    location_area_code: u32,
    mobile_country_code: u16,
    mobile_network_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_strength: Option<i16>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WifiJson {
    mac_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal_strength: Option<i16>,
}

impl GeolocateRequest {
    pub(crate) fn from_query(q: &CellQuery) -> Self {
        let n = q.network;
        Self {
            home_mobile_country_code: n.mcc,
            home_mobile_network_code: n.mnc,
            radio_type: match q.radio {
                Radio::Gsm => "gsm",
                Radio::Lte => "lte",
            },
            // The server's own address says nothing about where a badge is.
            consider_ip: false,
            cell_towers: q
                .cells
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| CellTowerJson {
                    cell_id: c.cell_id,
                    location_area_code: c.lac,
                    mobile_country_code: n.mcc,
                    mobile_network_code: n.mnc,
                    signal_strength: cell_signal_dbm(c.rssi),
                })
                .collect(),
            wifi_access_points: q
                .wifi
                .iter()
                .map(|(mac, rssi)| WifiJson {
                    mac_address: mac.to_string(),
                    signal_strength: (*rssi != 0).then_some(i16::from(*rssi)),
                })
                .collect(),
        }
    }
}

/// The API wants dBm; the badge's cell byte is "larger = stronger" on a
/// scale that depends on the firmware. Firmwares that report dBm put it in
/// the byte as a signed value (0x80..=0xFF = -128..-1 dBm); anything below
/// 0x80 is not dBm, and is left out (the field is optional) rather than
/// sent as a wrong number.
pub(crate) fn cell_signal_dbm(rssi: u8) -> Option<i16> {
    (rssi >= 0x80).then(|| i16::from(rssi as i8))
}

#[derive(Debug, Deserialize)]
struct GeolocateAnswer {
    location: LatLng,
    accuracy: f64,
}

#[derive(Debug, Deserialize)]
struct LatLng {
    lat: f64,
    lng: f64,
}

#[derive(Debug, Deserialize)]
struct ReverseAnswer {
    display_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::layout::{CellTower, MacAddr, MobileNetwork};

    #[test]
    fn the_request_body_has_the_geolocation_api_shape() {
        let q = CellQuery {
            network: MobileNetwork::new(460, 1),
            radio: Radio::Lte,
            cells: vec![
                CellTower {
                    lac: 30000,
                    cell_id: 123_456_789,
                    rssi: 0xB0,
                },
                CellTower::default(),
                CellTower {
                    lac: 30000,
                    cell_id: 5,
                    rssi: 40,
                },
            ],
            wifi: vec![(MacAddr([0xAC, 0x23, 0x3F, 0, 1, 0xFF]), -61)],
        };
        let json = serde_json::to_value(GeolocateRequest::from_query(&q)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "homeMobileCountryCode": 460,
                "homeMobileNetworkCode": 1,
                "radioType": "lte",
                "considerIp": false,
                "cellTowers": [
                    {"cellId": 123456789, "locationAreaCode": 30000, "mobileCountryCode": 460,
                     "mobileNetworkCode": 1, "signalStrength": -80},
                    {"cellId": 5, "locationAreaCode": 30000, "mobileCountryCode": 460,
                     "mobileNetworkCode": 1}
                ],
                "wifiAccessPoints": [{"macAddress": "AC:23:3F:00:01:FF", "signalStrength": -61}]
            })
        );
    }

    #[test]
    fn only_signed_dbm_bytes_become_signal_strength() {
        assert_eq!(cell_signal_dbm(0xFF), Some(-1));
        assert_eq!(cell_signal_dbm(0x80), Some(-128));
        assert_eq!(cell_signal_dbm(0x7F), None);
        assert_eq!(cell_signal_dbm(0), None);
    }

    #[test]
    fn the_key_is_a_query_parameter() {
        let http = client(Duration::from_secs(1)).unwrap();
        let c =
            GeolocationClient::new(http.clone(), "http://127.0.0.1:1/geolocate", "a b&c").unwrap();
        assert_eq!(c.url.as_str(), "http://127.0.0.1:1/geolocate?key=a+b%26c");
        let c = GeolocationClient::new(http, "http://127.0.0.1:1/geolocate", "").unwrap();
        assert_eq!(c.url.query(), None);
    }
}

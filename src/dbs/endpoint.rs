//! Which DBS host serves a region.
//!
//! DBS does not follow the usual `<product>.<region>.aliyuncs.com` rule: many regions are served
//! by the Hangzhou host, and the SDK resolver's fallback (`dbs.<region>.aliyuncs.com`) names a
//! host that the documentation never mentions. So the map is explicit, copied from the generated
//! SDKs, and unknown regions get the documented `dbs-api.` pattern.

/// The host that serves every region in [`HANGZHOU_SERVED`].
const HANGZHOU: &str = "https://dbs-api.cn-hangzhou.aliyuncs.com";

/// Regions whose DBS API is served by the Hangzhou host (GO-TEA, PY-TEA, JAVA-OLD and PY-OLD
/// endpoint maps agree).
///
/// `cn-zhangjiakou` is a known disagreement: the official API metadata (2024 and 2025) maps it to
/// `dbs-api.cn-zhangjiakou.aliyuncs.com`, while every generated SDK sends it to Hangzhou. We follow
/// the SDKs, because that is the route the SDKs in production use today and the Hangzhou host is
/// certain to exist; a user who needs the regional host can set the endpoint explicitly.
pub const HANGZHOU_SERVED: &[&str] = &[
    "cn-hangzhou",
    "cn-shanghai",
    "cn-qingdao",
    "cn-beijing",
    "cn-zhangjiakou",
    "cn-shenzhen",
    "cn-hongkong",
    "us-west-1",
    "us-east-1",
    "cn-hangzhou-finance",
    "cn-shanghai-finance-1",
    "cn-shenzhen-finance-1",
];

/// Regions with their own `dbs-api.<region>.aliyuncs.com` host in the SDK maps, plus
/// `cn-wulanchabu` from the 2025 API metadata.
pub const OWN_HOST: &[&str] = &[
    "cn-chengdu",
    "cn-huhehaote",
    "cn-wulanchabu",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-5",
    "ap-northeast-1",
    "ap-south-1",
    "eu-central-1",
    "eu-west-1",
    "me-east-1",
];

/// The base URL (no trailing slash) of the DBS API for a region.
///
/// Region names are matched after trimming and lower-casing, because they come from hand-written
/// configuration. An empty region gets the Hangzhou host, DBS's home region; an unknown one gets
/// `https://dbs-api.<region>.aliyuncs.com`, the documented pattern, so new regions work before the
/// map learns them.
pub fn endpoint_for_region(region: &str) -> String {
    let region = region.trim().to_ascii_lowercase();
    if region.is_empty() || HANGZHOU_SERVED.contains(&region.as_str()) {
        HANGZHOU.to_string()
    } else {
        format!("https://dbs-api.{region}.aliyuncs.com")
    }
}

/// Regions without a VPC host in the API metadata (2025): their VPC traffic has nowhere to go.
pub const NO_VPC_HOST: &[&str] = &["cn-hangzhou-finance"];

/// The VPC base URL for a region, `https://dbs-api-vpc.<region>.aliyuncs.com`, for machines
/// that reach DBS over the VPC network only.
///
/// Unlike the public map, every region has its own VPC host, including the regions whose public
/// API is served from Hangzhou (API metadata 2025: `cn-shanghai` → `dbs-api-vpc.cn-shanghai`).
/// `None` for an empty region and for the regions in [`NO_VPC_HOST`].
pub fn vpc_endpoint_for_region(region: &str) -> Option<String> {
    let region = region.trim().to_ascii_lowercase();
    if region.is_empty() || NO_VPC_HOST.contains(&region.as_str()) {
        return None;
    }
    Some(format!("https://dbs-api-vpc.{region}.aliyuncs.com"))
}

/// Whether the region appears in the endpoint map. Configuration checks use it to warn about a
/// probable typo without refusing a region that DBS added after this list was written.
pub fn is_known_region(region: &str) -> bool {
    let region = region.trim().to_ascii_lowercase();
    HANGZHOU_SERVED.contains(&region.as_str()) || OWN_HOST.contains(&region.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangzhou_served_regions_map_to_the_hangzhou_host() {
        for region in HANGZHOU_SERVED {
            assert_eq!(
                endpoint_for_region(region),
                "https://dbs-api.cn-hangzhou.aliyuncs.com",
                "{region}"
            );
        }
        assert_eq!(HANGZHOU_SERVED.len(), 12);
    }

    #[test]
    fn regions_with_their_own_host_use_it() {
        for (region, host) in [
            ("cn-chengdu", "https://dbs-api.cn-chengdu.aliyuncs.com"),
            (
                "ap-southeast-1",
                "https://dbs-api.ap-southeast-1.aliyuncs.com",
            ),
            ("eu-central-1", "https://dbs-api.eu-central-1.aliyuncs.com"),
            ("me-east-1", "https://dbs-api.me-east-1.aliyuncs.com"),
        ] {
            assert_eq!(endpoint_for_region(region), host);
        }
        for region in OWN_HOST {
            assert_eq!(
                endpoint_for_region(region),
                format!("https://dbs-api.{region}.aliyuncs.com")
            );
        }
    }

    #[test]
    fn zhangjiakou_follows_the_sdk_maps() {
        assert_eq!(
            endpoint_for_region("cn-zhangjiakou"),
            "https://dbs-api.cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn unknown_regions_use_the_documented_pattern() {
        assert_eq!(
            endpoint_for_region("xx-newregion-9"),
            "https://dbs-api.xx-newregion-9.aliyuncs.com"
        );
        assert!(!is_known_region("xx-newregion-9"));
    }

    #[test]
    fn input_is_trimmed_and_lowercased() {
        assert_eq!(
            endpoint_for_region("  CN-Shanghai "),
            "https://dbs-api.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            endpoint_for_region("AP-Southeast-1"),
            "https://dbs-api.ap-southeast-1.aliyuncs.com"
        );
        assert!(is_known_region(" EU-WEST-1"));
    }

    #[test]
    fn vpc_hosts_are_per_region_even_where_the_public_api_is_in_hangzhou() {
        assert_eq!(
            vpc_endpoint_for_region("cn-shanghai").as_deref(),
            Some("https://dbs-api-vpc.cn-shanghai.aliyuncs.com")
        );
        assert_eq!(
            vpc_endpoint_for_region(" AP-Southeast-1 ").as_deref(),
            Some("https://dbs-api-vpc.ap-southeast-1.aliyuncs.com")
        );
        assert_eq!(vpc_endpoint_for_region("cn-hangzhou-finance"), None);
        assert_eq!(vpc_endpoint_for_region(""), None);
    }

    #[test]
    fn empty_region_means_hangzhou() {
        assert_eq!(
            endpoint_for_region(""),
            "https://dbs-api.cn-hangzhou.aliyuncs.com"
        );
    }
}

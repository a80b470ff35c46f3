//! The two profile files people already have: the aliyun CLI's `~/.aliyun/config.json` and the
//! SDKs' credentials ini file `~/.alibabacloud/credentials`.
//!
//! Pure parsing, no IO: the caller reads the file and passes the text, so every rule here is
//! tested on strings. The ini format is parsed by hand (it is small, and no ini crate is a
//! dependency). Errors name the line or the key that is wrong, never a value: values are secrets.

use serde::Deserialize;

use super::Credentials;
use crate::secret::Secret;

/// What a profile says about where its credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileCredentials {
    /// A long-lived AccessKey, or an STS AccessKey with its token.
    Static(Credentials),
    /// The ECS RAM role of the instance, fetched from instance metadata. `None` means "whichever
    /// role the instance has".
    EcsRamRole(Option<String>),
}

/// Why a profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The text is not in the file's format.
    #[error("{0}")]
    Syntax(String),
    /// The profile uses a way of getting credentials that dbswatch does not implement.
    #[error(
        "profile `{profile}` uses {what}, which dbswatch does not support; use an AccessKey \
         ({supported}), or give the credentials in the [aliyun] section of the config"
    )]
    Unsupported {
        /// The profile name.
        profile: String,
        /// `mode RamRoleArn`, `type oidc_role_arn`, ...
        what: String,
        /// The modes or types that work.
        supported: &'static str,
    },
    /// A key the profile's mode needs is missing or empty.
    #[error("profile `{profile}` has no `{key}`; add it (or run `aliyun configure` again)")]
    Missing {
        /// The profile name.
        profile: String,
        /// The missing key.
        key: &'static str,
    },
}

/// The profile names in the file, for "profile not found" messages.
pub trait ProfileNames {
    /// Every profile name, in file order.
    fn names(&self) -> Vec<String>;
}

// ---------------------------------------------------------------------------------------------
// aliyun CLI config.json

/// `~/.aliyun/config.json`, as far as credentials go.
#[derive(Debug, Clone, Deserialize)]
pub struct CliConfig {
    /// The profile the CLI uses when none is named.
    #[serde(default)]
    pub current: Option<String>,
    /// Every profile.
    #[serde(default)]
    pub profiles: Vec<CliProfile>,
}

/// One CLI profile. Only the fields dbswatch reads; the CLI writes many more.
#[derive(Clone, Deserialize)]
pub struct CliProfile {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `AK`, `StsToken`, `EcsRamRole`, `RamRoleArn`, ... (the CLI matches it case-insensitively).
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: Secret,
    #[serde(default)]
    sts_token: Secret,
    #[serde(default)]
    ram_role_name: String,
    /// The region the profile works in; used when the config names none.
    #[serde(default)]
    pub region_id: String,
}

impl std::fmt::Debug for CliProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliProfile")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("region_id", &self.region_id)
            .finish_non_exhaustive()
    }
}

impl CliConfig {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<CliConfig, ProfileError> {
        serde_json::from_str(text).map_err(|e| {
            ProfileError::Syntax(format!(
                "not a valid aliyun CLI config ({}); fix it or run `aliyun configure`",
                // serde_json's message names the line and column, never the value.
                e
            ))
        })
    }

    /// The profile `name`, or the `current` one when no name is given.
    pub fn profile(&self, name: Option<&str>) -> Option<&CliProfile> {
        let wanted = name.or(self.current.as_deref())?;
        self.profiles.iter().find(|p| p.name == wanted)
    }

    /// The name that [`CliConfig::profile`] looks for.
    pub fn wanted<'a>(&'a self, name: Option<&'a str>) -> Option<&'a str> {
        name.or(self.current.as_deref())
    }
}

impl ProfileNames for CliConfig {
    fn names(&self) -> Vec<String> {
        self.profiles.iter().map(|p| p.name.clone()).collect()
    }
}

impl CliProfile {
    /// The credentials this profile stands for, by its mode.
    pub fn credentials(&self) -> Result<ProfileCredentials, ProfileError> {
        let mode = self.mode.trim();
        let missing = |key| ProfileError::Missing {
            profile: self.name.clone(),
            key,
        };
        let access_key = || -> Result<Credentials, ProfileError> {
            if self.access_key_id.trim().is_empty() {
                return Err(missing("access_key_id"));
            }
            if self.access_key_secret.expose().trim().is_empty() {
                return Err(missing("access_key_secret"));
            }
            Ok(Credentials {
                access_key_id: self.access_key_id.trim().to_string(),
                access_key_secret: Secret::new(self.access_key_secret.expose().trim()),
                security_token: None,
            })
        };
        if mode.is_empty() || mode.eq_ignore_ascii_case("AK") {
            Ok(ProfileCredentials::Static(access_key()?))
        } else if mode.eq_ignore_ascii_case("StsToken") {
            let mut credentials = access_key()?;
            if self.sts_token.expose().trim().is_empty() {
                return Err(missing("sts_token"));
            }
            credentials.security_token = Some(Secret::new(self.sts_token.expose().trim()));
            Ok(ProfileCredentials::Static(credentials))
        } else if mode.eq_ignore_ascii_case("EcsRamRole") {
            let role = self.ram_role_name.trim();
            Ok(ProfileCredentials::EcsRamRole(
                (!role.is_empty()).then(|| role.to_string()),
            ))
        } else {
            Err(ProfileError::Unsupported {
                profile: self.name.clone(),
                what: format!("mode {mode}"),
                supported: "modes AK and StsToken, or EcsRamRole",
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// credentials ini

/// One `[section]` of an ini file: its keys in file order. Values are kept as [`Secret`]s
/// because most of them are.
#[derive(Clone, PartialEq)]
pub struct IniSection {
    /// The section name (the profile name).
    pub name: String,
    entries: Vec<(String, Secret)>,
}

impl std::fmt::Debug for IniSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("IniSection")
            .field("name", &self.name)
            .field("keys", &keys)
            .finish()
    }
}

impl IniSection {
    /// The value of `key`, the last one when a key repeats (as go-ini, used by the Go SDK, does).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.expose())
    }

    /// The credentials this profile stands for, by its `type`.
    pub fn credentials(&self) -> Result<ProfileCredentials, ProfileError> {
        let missing = |key| ProfileError::Missing {
            profile: self.name.clone(),
            key,
        };
        let value = |key: &'static str| -> Result<String, ProfileError> {
            self.get(key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| missing(key))
        };
        let kind = self.get("type").map(str::trim).unwrap_or("");
        match kind {
            // An untyped section with keys is what people write by hand; treat it as a key.
            "access_key" | "" => Ok(ProfileCredentials::Static(Credentials {
                access_key_id: value("access_key_id")?,
                access_key_secret: Secret::new(value("access_key_secret")?),
                security_token: None,
            })),
            "sts" => Ok(ProfileCredentials::Static(Credentials {
                access_key_id: value("access_key_id")?,
                access_key_secret: Secret::new(value("access_key_secret")?),
                security_token: Some(Secret::new(value("security_token")?)),
            })),
            "ecs_ram_role" => Ok(ProfileCredentials::EcsRamRole(
                self.get("role_name")
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
            )),
            other => Err(ProfileError::Unsupported {
                profile: self.name.clone(),
                what: format!("type {other}"),
                supported: "types access_key and sts, or ecs_ram_role",
            }),
        }
    }
}

/// A parsed ini file.
#[derive(Debug, Clone, PartialEq)]
pub struct IniFile {
    /// Sections in file order; a section that appears twice is merged into the first.
    pub sections: Vec<IniSection>,
}

impl IniFile {
    /// Parses ini text: `[section]` headers, `key = value` lines (also `key: value`), `#` and `;`
    /// comment lines, inline comments after whitespace, and values in matching quotes.
    pub fn parse(text: &str) -> Result<IniFile, ProfileError> {
        let mut sections: Vec<IniSection> = Vec::new();
        let mut current: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.trim_start_matches('\u{feff}').trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = strip_comment(rest).trim_end().strip_suffix(']') else {
                    return Err(ProfileError::Syntax(format!(
                        "line {line_no}: a section header must look like [name]"
                    )));
                };
                let name = name.trim().to_string();
                if name.is_empty() {
                    return Err(ProfileError::Syntax(format!(
                        "line {line_no}: the section name is empty"
                    )));
                }
                current = Some(match sections.iter().position(|s| s.name == name) {
                    Some(i) => i,
                    None => {
                        sections.push(IniSection {
                            name,
                            entries: Vec::new(),
                        });
                        sections.len() - 1
                    }
                });
                continue;
            }
            let Some(at) = line.find(['=', ':']) else {
                return Err(ProfileError::Syntax(format!(
                    "line {line_no}: expected `key = value`"
                )));
            };
            let key = line[..at].trim();
            if key.is_empty() {
                return Err(ProfileError::Syntax(format!(
                    "line {line_no}: the key before `=` is empty"
                )));
            }
            let Some(section) = current else {
                return Err(ProfileError::Syntax(format!(
                    "line {line_no}: `{key}` comes before any [profile] header"
                )));
            };
            let value = unquote(strip_comment(line[at + 1..].trim()).trim());
            sections[section]
                .entries
                .push((key.to_string(), Secret::new(value)));
        }
        Ok(IniFile { sections })
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

impl ProfileNames for IniFile {
    fn names(&self) -> Vec<String> {
        self.sections.iter().map(|s| s.name.clone()).collect()
    }
}

/// Cuts an inline comment: `#` or `;` preceded by whitespace, outside quotes.
fn strip_comment(value: &str) -> &str {
    if value.starts_with('"') || value.starts_with('\'') {
        return value;
    }
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if (*b == b'#' || *b == b';') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &value[..i];
        }
    }
    value
}

/// Removes one pair of matching quotes around a value.
fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return value[1..value.len() - 1].to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI: &str = r#"{
      "current": "AK",
      "profiles": [
        {"name": "AK", "mode": "AK", "access_key_id": "LTAIcliAK", "access_key_secret": "cli-secret", "region_id": "cn-shanghai"},
        {"name": "sts", "mode": "StsToken", "access_key_id": "STS.abc", "access_key_secret": "sts-secret", "sts_token": "CAIS-cli", "region_id": "cn-hangzhou"},
        {"name": "lower", "mode": "ststoken", "access_key_id": "STS.low", "access_key_secret": "s", "sts_token": "t"},
        {"name": "role", "mode": "EcsRamRole", "ram_role_name": "dbswatch-role"},
        {"name": "anyrole", "mode": "EcsRamRole"},
        {"name": "arn", "mode": "RamRoleArn", "access_key_id": "x", "access_key_secret": "y", "ram_role_arn": "acs:ram::1:role/r"},
        {"name": "broken", "mode": "StsToken", "access_key_id": "STS.x", "access_key_secret": "y"}
      ],
      "meta_path": "", "output_format": "json"
    }"#;

    fn fixed(p: Result<ProfileCredentials, ProfileError>) -> Credentials {
        match p.unwrap() {
            ProfileCredentials::Static(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_current_profile_is_the_default() {
        let cli = CliConfig::parse(CLI).unwrap();
        let profile = cli.profile(None).unwrap();
        assert_eq!(profile.name, "AK");
        assert_eq!(profile.region_id, "cn-shanghai");
        let c = fixed(profile.credentials());
        assert_eq!(c.access_key_id, "LTAIcliAK");
        assert_eq!(c.access_key_secret.expose(), "cli-secret");
        assert!(c.security_token.is_none());
    }

    #[test]
    fn cli_sts_profiles_carry_their_token_and_modes_ignore_case() {
        let cli = CliConfig::parse(CLI).unwrap();
        let c = fixed(cli.profile(Some("sts")).unwrap().credentials());
        assert_eq!(c.access_key_id, "STS.abc");
        assert_eq!(c.security_token.unwrap().expose(), "CAIS-cli");
        let c = fixed(cli.profile(Some("lower")).unwrap().credentials());
        assert_eq!(c.security_token.unwrap().expose(), "t");
    }

    #[test]
    fn cli_ecs_ram_role_and_unsupported_modes() {
        let cli = CliConfig::parse(CLI).unwrap();
        assert_eq!(
            cli.profile(Some("role")).unwrap().credentials().unwrap(),
            ProfileCredentials::EcsRamRole(Some("dbswatch-role".into()))
        );
        assert_eq!(
            cli.profile(Some("anyrole")).unwrap().credentials().unwrap(),
            ProfileCredentials::EcsRamRole(None)
        );
        let e = cli.profile(Some("arn")).unwrap().credentials().unwrap_err();
        assert!(e.to_string().contains("mode RamRoleArn"), "{e}");
        assert!(e.to_string().contains("[aliyun]"), "{e}");
        let e = cli
            .profile(Some("broken"))
            .unwrap()
            .credentials()
            .unwrap_err();
        assert_eq!(
            e,
            ProfileError::Missing {
                profile: "broken".into(),
                key: "sts_token"
            }
        );
        assert!(cli.profile(Some("nope")).is_none());
        assert_eq!(cli.names().len(), 7);
    }

    #[test]
    fn cli_syntax_errors_do_not_quote_values() {
        let e =
            CliConfig::parse(r#"{"profiles": [{"name": "a", "access_key_secret": "top-secret""#)
                .unwrap_err();
        assert!(!e.to_string().contains("top-secret"), "{e}");
        assert!(e.to_string().contains("aliyun configure"), "{e}");
        let debug = format!("{:?}", CliConfig::parse(CLI).unwrap());
        assert!(
            !debug.contains("cli-secret") && !debug.contains("CAIS-cli"),
            "{debug}"
        );
    }

    const INI: &str = "\
# written by hand
[default]
type = access_key
access_key_id = LTAIiniDefault
access_key_secret = ini-secret   # inline comment

[project1]
type = ecs_ram_role
role_name = EcsRamRoleTest

[project2]
type = ram_role_arn
access_key_id = foo
access_key_secret = bar
role_arn = role_arn

; semicolon comment
[sts]
type = sts
access_key_id: STS.ini
access_key_secret = \"quoted # not a comment\"
security_token = CAIS-ini

[untyped]
access_key_id = LTAIuntyped
access_key_secret = s#hash-is-part-of-the-value
";

    #[test]
    fn ini_profiles_of_each_supported_type() {
        let ini = IniFile::parse(INI).unwrap();
        assert_eq!(
            ini.names(),
            vec!["default", "project1", "project2", "sts", "untyped"]
        );
        let c = fixed(ini.section("default").unwrap().credentials());
        assert_eq!(c.access_key_id, "LTAIiniDefault");
        assert_eq!(c.access_key_secret.expose(), "ini-secret");
        let c = fixed(ini.section("sts").unwrap().credentials());
        assert_eq!(c.access_key_id, "STS.ini");
        assert_eq!(c.access_key_secret.expose(), "quoted # not a comment");
        assert_eq!(c.security_token.unwrap().expose(), "CAIS-ini");
        let c = fixed(ini.section("untyped").unwrap().credentials());
        assert_eq!(c.access_key_secret.expose(), "s#hash-is-part-of-the-value");
        assert_eq!(
            ini.section("project1").unwrap().credentials().unwrap(),
            ProfileCredentials::EcsRamRole(Some("EcsRamRoleTest".into()))
        );
        let e = ini.section("project2").unwrap().credentials().unwrap_err();
        assert!(e.to_string().contains("type ram_role_arn"), "{e}");
    }

    #[test]
    fn ini_repeated_sections_merge_and_the_last_key_wins() {
        let ini =
            IniFile::parse("[a]\naccess_key_id = one\n[b]\nx = 1\n[a]\naccess_key_id = two\n")
                .unwrap();
        assert_eq!(ini.sections.len(), 2);
        assert_eq!(ini.section("a").unwrap().get("access_key_id"), Some("two"));
    }

    #[test]
    fn ini_syntax_errors_name_the_line_not_the_value() {
        for (text, needle) in [
            (
                "access_key_id = x\n",
                "line 1: `access_key_id` comes before",
            ),
            ("[default\n", "line 1: a section header"),
            ("[]\n", "line 1: the section name is empty"),
            (
                "[a]\njust-a-secret-value\n",
                "line 2: expected `key = value`",
            ),
            ("[a]\n = v\n", "line 2: the key before"),
        ] {
            let e = IniFile::parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(!e.to_string().contains("just-a-secret-value"), "{e}");
        }
        let e = IniFile::parse("[a]\ntype = access_key\naccess_key_id = x\n")
            .unwrap()
            .section("a")
            .unwrap()
            .credentials()
            .unwrap_err();
        assert_eq!(
            e,
            ProfileError::Missing {
                profile: "a".into(),
                key: "access_key_secret"
            }
        );
    }

    #[test]
    fn ini_debug_shows_keys_only() {
        let ini = IniFile::parse(INI).unwrap();
        let debug = format!("{ini:?}");
        assert!(debug.contains("access_key_secret"), "{debug}");
        assert!(
            !debug.contains("ini-secret") && !debug.contains("CAIS-ini"),
            "{debug}"
        );
    }

    #[test]
    fn bom_crlf_and_blank_lines_are_tolerated() {
        let ini = IniFile::parse(
            "\u{feff}[default]\r\n\r\naccess_key_id = a\r\naccess_key_secret = b\r\n",
        )
        .unwrap();
        let c = fixed(ini.section("default").unwrap().credentials());
        assert_eq!(
            (c.access_key_id.as_str(), c.access_key_secret.expose()),
            ("a", "b")
        );
    }
}

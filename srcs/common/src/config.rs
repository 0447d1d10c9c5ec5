//! Typed configuration from the environment. Each service has one struct, read
//! once at start; a missing or malformed variable stops start-up with a message
//! that names the variable, never with a panic deep inside the service.

use serde::de::DeserializeOwned;

/// A variable that stops start-up, always named in full (prefix included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: missing variable {0}")]
    Missing(String),
    #[error("configuration error: bad variable {variable}: {reason}")]
    Bad { variable: String, reason: String },
    /// envy's text when it names no variable (it always does today).
    #[error("configuration error: {0}")]
    Other(String),
}

impl ConfigError {
    pub fn bad(variable: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Bad {
            variable: variable.into(),
            reason: reason.into(),
        }
    }
}

/// The one check for counts that the types admit as 0 but a service cannot
/// use (workers, pool size, batch size...): refused, naming the variable.
pub fn at_least_one(variable: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::bad(variable, "must be at least 1 (got 0)"));
    }
    Ok(())
}

/// How every service reads its configuration: its own variables under
/// `PREFIX` with envy, then the nested settings envy cannot read (PostgreSQL,
/// RabbitMQ: `#[serde(skip)]` fields read under prefixes of their own), then
/// the checks the types cannot make. A bad or missing variable stops start-up
/// with a message naming it.
pub trait ServiceConfig: DeserializeOwned {
    const PREFIX: &'static str;

    /// Fills the `#[serde(skip)]` fields from `vars` (nothing by default).
    fn read_nested(&mut self, _vars: &[(String, String)]) -> Result<(), ConfigError> {
        Ok(())
    }

    /// What the types cannot check; `Application::build` runs it too, for
    /// configs built by hand (tests).
    fn validate(&self) -> Result<(), ConfigError>;

    fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        // Secret files are read once here, for the service's own variables
        // and the nested ones alike; the passes below then find plain
        // `*_PASSWORD` variables and no `*_PASSWORD_FILE` left to read.
        let vars = read_secret_files(Self::PREFIX, vars)?;
        let mut config: Self = from_iter(Self::PREFIX, vars.iter().cloned())?;
        config.read_nested(&vars)?;
        config.validate()?;
        Ok(config)
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }
}

/// Reads `T` from VARS, the variables named `PREFIX` + field name in upper
/// case (`ServiceConfig::from_env` passes the process environment; tests
/// pass their own).
pub fn from_iter<T, I>(prefix: &str, vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let vars = read_secret_files(prefix, vars)?;
    envy::prefixed(prefix)
        .from_iter(vars)
        .map_err(|e| describe(prefix, e))
}

/// What a variable naming a secret's file ends with: `X_PASSWORD_FILE=/path`
/// stands for `X_PASSWORD=<the file's content>`.
pub const SECRET_FILE_SUFFIX: &str = "_FILE";

/// Replaces every `<prefix>…PASSWORD_FILE=/path` by `<prefix>…PASSWORD=<content
/// of /path>` (trailing line breaks removed, as `echo` and editors add one), so
/// passwords can come from Docker or Kubernetes secrets, or from a root-only
/// file on a VM, instead of the environment. Only password variables: the
/// other `*_FILE` settings (the gateway's access log) name files to write.
/// Setting both forms, or a file that cannot be read, stops start-up naming
/// the variables and the path; the content never appears in an error.
/// An empty `*_FILE` variable counts as unset (Compose's `${X:-}`).
pub fn read_secret_files<I>(prefix: &str, vars: I) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = vars.into_iter().collect();
    let files: Vec<(String, String)> = vars
        .iter()
        .filter(|(name, path)| {
            name.starts_with(prefix)
                && !path.is_empty()
                && name
                    .strip_suffix(SECRET_FILE_SUFFIX)
                    .is_some_and(|plain| plain.ends_with("PASSWORD"))
        })
        .cloned()
        .collect();
    for (file_var, path) in files {
        let plain = file_var.trim_end_matches(SECRET_FILE_SUFFIX).to_owned();
        if vars.iter().any(|(name, _)| *name == plain) {
            return Err(ConfigError::bad(
                &file_var,
                format!("{plain} is set too: set only one of {plain} and {file_var}"),
            ));
        }
        let content = std::fs::read(&path)
            .map_err(|e| ConfigError::bad(&file_var, format!("cannot read {path}: {e}")))?;
        let content = String::from_utf8(content)
            .map_err(|_| ConfigError::bad(&file_var, format!("{path} is not UTF-8 text")))?;
        let secret = content.trim_end_matches(['\r', '\n']);
        if secret.is_empty() {
            return Err(ConfigError::bad(&file_var, format!("{path} is empty")));
        }
        let secret = secret.to_owned();
        vars.retain(|(name, _)| *name != file_var);
        vars.push((plain, secret));
    }
    Ok(vars)
}

fn describe(prefix: &str, err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            ConfigError::Missing(format!("{prefix}{}", field.to_uppercase()))
        }
        // envy's own text already names the variable ("... provided by PORT");
        // put the full, prefixed name in front so it can be grepped for.
        envy::Error::Custom(msg) => match msg.rsplit_once(" provided by ") {
            Some((what, var)) => ConfigError::bad(format!("{prefix}{var}"), what),
            None => ConfigError::Other(msg),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Sample {
        port: u16,
        #[allow(dead_code)]
        name: String,
    }

    pub(crate) fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_variable_is_named_with_its_prefix() {
        let err = from_iter::<Sample, _>("SVC_", vars(&[("SVC_PORT", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: missing variable SVC_NAME"
        );
    }

    #[test]
    fn malformed_variable_is_named_with_its_prefix() {
        let err = from_iter::<Sample, _>("SVC_", vars(&[("SVC_PORT", "http"), ("SVC_NAME", "x")]))
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::bad(
                "SVC_PORT",
                "invalid digit found in string while parsing value 'http'"
            )
        );
    }

    #[test]
    fn zero_is_refused_by_name() {
        assert_eq!(
            at_least_one("SVC_WORKERS", 0).unwrap_err().to_string(),
            "configuration error: bad variable SVC_WORKERS: must be at least 1 (got 0)"
        );
        assert_eq!(at_least_one("SVC_WORKERS", 1), Ok(()));
    }

    #[derive(Debug, Deserialize)]
    struct WithSecret {
        db_password: String,
        #[serde(default)]
        access_log_file: Option<String>,
    }

    /// A directory of its own per test, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn secret_file(content: &[u8]) -> (TempDir, String) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mp-secret-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, content).unwrap();
        let path = path.to_str().unwrap().to_owned();
        (TempDir(dir), path)
    }

    #[test]
    fn a_password_is_read_from_its_file_without_the_trailing_newline() {
        for (content, expected) in [
            (&b"s3cret\n"[..], "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret", "s3cret"),
            (b" with spaces \n", " with spaces "),
        ] {
            let (_dir, path) = secret_file(content);
            let s: WithSecret =
                from_iter("SVC_", vars(&[("SVC_DB_PASSWORD_FILE", path.as_str())])).unwrap();
            assert_eq!(s.db_password, expected);
        }
    }

    #[test]
    fn other_file_settings_are_left_alone() {
        let s: WithSecret = from_iter(
            "SVC_",
            vars(&[
                ("SVC_DB_PASSWORD", "pw"),
                ("SVC_ACCESS_LOG_FILE", "/nonexistent/access.log"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.access_log_file.as_deref(),
            Some("/nonexistent/access.log")
        );
        // An empty *_PASSWORD_FILE counts as unset.
        let s: WithSecret = from_iter(
            "SVC_",
            vars(&[("SVC_DB_PASSWORD", "pw"), ("SVC_DB_PASSWORD_FILE", "")]),
        )
        .unwrap();
        assert_eq!(s.db_password, "pw");
    }

    #[test]
    fn both_forms_at_once_are_refused_naming_both() {
        let (_dir, path) = secret_file(b"from-file\n");
        let err = from_iter::<WithSecret, _>(
            "SVC_",
            vars(&[
                ("SVC_DB_PASSWORD", "from-env"),
                ("SVC_DB_PASSWORD_FILE", path.as_str()),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: bad variable SVC_DB_PASSWORD_FILE: SVC_DB_PASSWORD is set too: \
             set only one of SVC_DB_PASSWORD and SVC_DB_PASSWORD_FILE"
        );
        assert!(!err.to_string().contains("from-"), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_named_with_its_variable_never_its_content() {
        let err = from_iter::<WithSecret, _>(
            "SVC_",
            vars(&[("SVC_DB_PASSWORD_FILE", "/nonexistent/db-password")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: bad variable SVC_DB_PASSWORD_FILE: cannot read \
             /nonexistent/db-password: No such file or directory (os error 2)"
        );
        let (dir, _) = secret_file(b"x");
        let dir_path = dir.path().to_str().unwrap().to_owned();
        let err = from_iter::<WithSecret, _>(
            "SVC_",
            vars(&[("SVC_DB_PASSWORD_FILE", dir_path.as_str())]),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "configuration error: bad variable SVC_DB_PASSWORD_FILE: cannot read {dir_path}: "
            )),
            "{err}"
        );
        for (content, why) in [
            (&b"\n"[..], "is empty"),
            (b"\xff\xfe s3cret", "is not UTF-8 text"),
        ] {
            let (_dir, path) = secret_file(content);
            let err = from_iter::<WithSecret, _>(
                "SVC_",
                vars(&[("SVC_DB_PASSWORD_FILE", path.as_str())]),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("configuration error: bad variable SVC_DB_PASSWORD_FILE: {path} {why}")
            );
        }
    }

    #[test]
    fn good_variables_are_read() {
        let s: Sample = from_iter(
            "SVC_",
            vars(&[("SVC_PORT", "8080"), ("SVC_NAME", "x"), ("OTHER", "y")]),
        )
        .unwrap();
        assert_eq!(s.port, 8080);
    }
}

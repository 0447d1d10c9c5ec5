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
        let vars: Vec<(String, String)> = vars.into_iter().collect();
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
    envy::prefixed(prefix)
        .from_iter(vars)
        .map_err(|e| describe(prefix, e))
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

//! Typed configuration from the environment. Each service has one struct, read
//! once at start; a missing or malformed variable stops start-up with a message
//! that names the variable, never with a panic deep inside the service.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// Reads `T` from the variables named `PREFIX` + field name in upper case.
pub fn from_env<T: DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    from_iter(prefix, std::env::vars())
}

/// Same as [`from_env`] over an explicit set of variables (for tests).
pub fn from_iter<T, I>(prefix: &str, vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    envy::prefixed(prefix)
        .from_iter(vars)
        .map_err(|e| ConfigError(describe(prefix, e)))
}

fn describe(prefix: &str, err: envy::Error) -> String {
    match err {
        envy::Error::MissingValue(field) => {
            format!("missing variable {prefix}{}", field.to_uppercase())
        }
        // envy's own text already names the variable ("... provided by PORT");
        // put the full, prefixed name in front so it can be grepped for.
        envy::Error::Custom(msg) => match msg.rsplit_once(" provided by ") {
            Some((what, var)) => format!("bad variable {prefix}{var}: {what}"),
            None => msg,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Sample {
        port: u16,
        #[allow(dead_code)]
        name: String,
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
        assert!(err.to_string().contains("SVC_PORT"), "{err}");
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

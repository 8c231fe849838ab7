use thiserror::Error;

/// Everything the JIT can reject. Fields are structured so callers can report them precisely.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum JitError {
    #[error("template `{template}`: placeholder `{{{{{name}}}}}` has no value")]
    MissingPlaceholder { template: String, name: String },
    #[error(
        "template `{template}`: value given for `{name}`, which the template does not declare"
    )]
    UnknownPlaceholder { template: String, name: String },
    #[error("template `{template}`: placeholder syntax left after rendering near `{context}`")]
    LeftoverPlaceholder { template: String, context: String },
    #[error("template `{template}`: malformed placeholder `{text}`")]
    MalformedPlaceholder { template: String, text: String },
    #[error("kernel `{key}`: WGSL does not parse: {message}")]
    Parse { key: String, message: String },
    #[error("kernel `{key}`: WGSL does not validate: {message}")]
    Validate { key: String, message: String },
    #[error("kernel `{key}`: bindings differ from the spec: {detail}")]
    BindingMismatch { key: String, detail: String },
    #[error("kernel `{family}`: illegal config `{config}`: {reason}")]
    IllegalConfig {
        family: String,
        config: String,
        reason: String,
    },
    #[error("kernel `{family}`: unsupported problem: {reason}")]
    UnsupportedProblem { family: String, reason: String },
    #[error("kernel `{family}`: unknown config key `{key}`")]
    UnknownConfigKey { family: String, key: String },
}

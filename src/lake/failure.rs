//! The storage failures users meet most, told apart so that the one line of an error names the
//! fix, and a retry only waits out what can go away by itself.

use std::error::Error;
use std::io::ErrorKind;

use deltalake::logstore::object_store::client::{HttpError, HttpErrorKind};
use deltalake::logstore::object_store::Error as StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    MissingBucket,
    CredentialsRefused,
    /// The local filesystem refused access to the lake's directory.
    NotPermitted,
    /// A local filesystem (or a quota) refused more bytes.
    StorageFull,
    Unreachable,
    Other,
}

impl StoreFailure {
    /// Classifies `error` by the first cause in its chain that tells: an object_store error
    /// variant, an HTTP error kind, or an I/O error kind.
    pub fn of(error: &(dyn Error + 'static)) -> Self {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(failure) = Self::of_cause(error) {
                return failure;
            }
            cause = error.source();
        }
        Self::Other
    }

    fn of_cause(error: &(dyn Error + 'static)) -> Option<Self> {
        if let Some(store) = error.downcast_ref::<StoreError>() {
            return Self::of_s3_code(&store.to_string()).or(match store {
                StoreError::PermissionDenied { .. } | StoreError::Unauthenticated { .. } => {
                    Some(Self::CredentialsRefused)
                }
                _ => None,
            });
        }
        if let Some(http) = error.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => Some(Self::Unreachable),
                _ => None,
            };
        }
        let io = error.downcast_ref::<std::io::Error>()?;
        match io.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(Self::StorageFull),
            ErrorKind::PermissionDenied => Some(Self::NotPermitted),
            _ => None,
        }
    }

    /// S3 names the failure in the error code of its response body (a missing bucket is a 404
    /// like a missing object, a full quota a 403 like refused credentials), and object_store
    /// maps the HTTP status to a variant only for some requests (a failed listing is `Generic`).
    /// It keeps the body only in its error's text (its request error types are private), so the
    /// code is read from there.
    fn of_s3_code(text: &str) -> Option<Self> {
        let code = |name: &str| text.contains(&format!("<Code>{name}</Code>"));
        if code("NoSuchBucket") {
            Some(Self::MissingBucket)
        } else if code("QuotaExceeded") {
            Some(Self::StorageFull)
        } else if ["SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"]
            .into_iter()
            .any(code)
        {
            Some(Self::CredentialsRefused)
        } else {
            None
        }
    }

    /// Only a fix by the user makes these go away.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::MissingBucket | Self::CredentialsRefused | Self::NotPermitted | Self::StorageFull
        )
    }

    /// [`Self::hint`], naming `location` where the fix is made there (a full disk).
    pub fn hint_at(self, location: &str) -> String {
        match self {
            Self::StorageFull => format!(
                " (no space left for {location}: free space there or raise the quota, then run again)"
            ),
            other => other.hint().to_string(),
        }
    }

    /// What to fix, as the end of an error line.
    pub fn hint(self) -> &'static str {
        match self {
            Self::MissingBucket => " (the bucket does not exist: create it, or fix lake.uri)",
            Self::CredentialsRefused => {
                " (credentials refused: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or lake.storage_options)"
            }
            Self::NotPermitted => " (permission denied: check the owner and mode of the directories under lake.uri)",
            Self::StorageFull => " (no space left: free space under lake.uri or raise the quota, then run again)",
            Self::Unreachable => " (store unreachable: check lake.storage_options.AWS_ENDPOINT_URL and the network)",
            Self::Other => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_and_io_kinds_classify_without_reading_text() {
        let denied = StoreError::PermissionDenied {
            path: "lake/_delta_log".into(),
            source: "SignatureDoesNotMatch".into(),
        };
        assert_eq!(StoreFailure::of(&denied), StoreFailure::CredentialsRefused);
        let full = std::io::Error::from(ErrorKind::StorageFull);
        let wrapped = StoreError::Generic {
            store: "LocalFileSystem",
            source: Box::new(full),
        };
        assert_eq!(StoreFailure::of(&wrapped), StoreFailure::StorageFull);
        assert!(StoreFailure::of(&wrapped).is_permanent());
        let missing_object = StoreError::NotFound {
            path: "lake/x".into(),
            source: "404 Not Found: NoSuchKey".into(),
        };
        assert_eq!(StoreFailure::of(&missing_object), StoreFailure::Other);
        let missing_bucket = StoreError::NotFound {
            path: "lake/x".into(),
            source: "<Code>NoSuchBucket</Code>".into(),
        };
        assert_eq!(StoreFailure::of(&missing_bucket), StoreFailure::MissingBucket);
    }
}

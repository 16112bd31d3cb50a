//! What `GET /jobs` and `GET /jobs/{name}` say about a Job: sipstuff's
//! `JobInfo` (name, namespace, status, created_at, completed_at) and more:
//! the phase with its start and end, and the call's result from the call
//! agent's report (the last line of the pod's log, as JSON).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

/// One Job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    pub name: String,
    pub namespace: String,
    /// sipstuff's status: `succeeded`, `failed`, `running`, `pending` or
    /// `unknown` (no status yet).
    pub status: String,
    /// The same, as this operator's name for it.
    pub phase: String,
    pub created_at: Option<String>,
    /// sipstuff's: the Job's completionTime (successful Jobs only).
    pub completed_at: Option<String>,
    /// When the Job started (status.startTime).
    pub started_at: Option<String>,
    /// When it finished, successfully or not (completionTime, else the
    /// time of its Failed condition).
    pub ended_at: Option<String>,
    /// The SIP result, from the report: final response code (null when
    /// none came), its reason phrase, and the outcome (answered, busy,
    /// no_answer, rejected, network, configuration).
    pub sip_code: Option<u64>,
    pub sip_reason: Option<String>,
    pub outcome: Option<String>,
    /// The call agent's report as it printed it (null until the pod has
    /// finished, or when its last line is not a JSON object).
    pub report: Option<Value>,
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    t.map(|t| t.0.to_string())
}

/// sipstuff's `_job_status`.
pub fn phase(job: &Job) -> &'static str {
    let Some(s) = &job.status else {
        return "unknown";
    };
    if s.succeeded.unwrap_or(0) > 0 {
        "succeeded"
    } else if s.failed.unwrap_or(0) > 0 {
        "failed"
    } else if s.active.unwrap_or(0) > 0 {
        "running"
    } else {
        "pending"
    }
}

/// Whether the Job has finished (its pod's log then holds the report).
pub fn finished(job: &Job) -> bool {
    matches!(phase(job), "succeeded" | "failed")
}

/// The report in a log's last non-empty line: a JSON object, else `None`.
pub fn report_of(log: &str) -> Option<Value> {
    let last = log.lines().rev().find(|l| !l.trim().is_empty())?;
    match serde_json::from_str::<Value>(last.trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// The newest of a Job's pods (by creation time; the last attempt).
pub fn newest_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `job`'s info with the report found (if any).
pub fn info(job: &Job, report: Option<Value>) -> JobInfo {
    let status = job.status.as_ref();
    let failed_at = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref());
    let completed = status.and_then(|s| s.completion_time.as_ref());
    let phase = phase(job).to_owned();
    let field = |k: &str| report.as_ref().and_then(|r| r.get(k));
    JobInfo {
        name: job.metadata.name.clone().unwrap_or_default(),
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        status: phase.clone(),
        phase,
        created_at: time(job.metadata.creation_timestamp.as_ref()),
        completed_at: time(completed),
        started_at: time(status.and_then(|s| s.start_time.as_ref())),
        ended_at: time(completed.or(failed_at)),
        sip_code: field("sip_code").and_then(Value::as_u64),
        sip_reason: field("sip_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        outcome: field("outcome").and_then(Value::as_str).map(str::to_owned),
        report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sbcall-x", "namespace": "ns",
                         "creationTimestamp": "2026-12-06T10:00:00Z"},
            "status": status,
        }))
        .expect("a Job")
    }

    #[test]
    fn phases_are_sipstuffs() {
        assert_eq!(phase(&job(json!({"succeeded": 1}))), "succeeded");
        assert_eq!(phase(&job(json!({"failed": 1, "active": 0}))), "failed");
        assert_eq!(phase(&job(json!({"active": 1}))), "running");
        assert_eq!(phase(&job(json!({}))), "pending");
        let mut j = job(json!({}));
        j.status = None;
        assert_eq!(phase(&j), "unknown");
    }

    #[test]
    fn the_report_is_the_last_line_when_it_is_an_object() {
        let log = "starting\n{\"sip_code\": 486, \"outcome\": \"busy\"}\n\n";
        assert_eq!(
            report_of(log),
            Some(json!({"sip_code": 486, "outcome": "busy"}))
        );
        assert_eq!(report_of("{\"a\":1}\nbye\n"), None);
        assert_eq!(report_of("[1,2]"), None);
        assert_eq!(report_of(""), None);
    }

    #[test]
    fn a_failed_job_ends_at_its_failed_condition() {
        let j = job(json!({
            "failed": 1, "startTime": "2026-12-06T10:00:01Z",
            "conditions": [{"type": "Failed", "status": "True",
                            "lastTransitionTime": "2026-12-06T10:00:09Z"}],
        }));
        let i = info(
            &j,
            Some(json!({"sip_code": 486, "sip_reason": "Busy Here", "outcome": "busy"})),
        );
        assert_eq!(i.status, "failed");
        assert_eq!(i.started_at.as_deref(), Some("2026-12-06T10:00:01Z"));
        assert_eq!(i.ended_at.as_deref(), Some("2026-12-06T10:00:09Z"));
        assert_eq!(i.completed_at, None);
        assert_eq!(i.sip_code, Some(486));
        assert_eq!(i.outcome.as_deref(), Some("busy"));
    }
}

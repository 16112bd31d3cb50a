//! The call report: one JSON object, printed as the agent's last line of
//! standard output (switchboard-operator reads it from the pod's log) and
//! written next to the recording as `<recording>.json`; and the exit code
//! of each outcome.

use serde::Serialize;

/// How the call ended, as the exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered, and what was to be played was played.
    Answered,
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy,
    /// No answer within the timeout (we cancelled), or 408/480/487.
    NoAnswer,
    /// Any other final refusal, a wrong password (401/403 after our
    /// credentials), or SRTP the far end would not take.
    Rejected,
    /// No response, a transport error, a TLS certificate refused.
    Network,
    /// A setting, a TTS voice, a WAV file or an engine that is not there.
    Configuration,
}

impl Outcome {
    /// The process exit code of this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Answered => 0,
            Outcome::Busy => 10,
            Outcome::NoAnswer => 11,
            Outcome::Rejected => 12,
            Outcome::Network => 13,
            Outcome::Configuration => 14,
        }
    }

    /// The outcome of a final response code to our INVITE.
    pub fn of_code(code: u16) -> Outcome {
        match code {
            200..=299 => Outcome::Answered,
            486 | 600 => Outcome::Busy,
            408 | 480 | 487 => Outcome::NoAnswer,
            _ => Outcome::Rejected,
        }
    }
}

/// One thing played into the call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Played {
    /// `text` or `wav`.
    pub kind: &'static str,
    /// The text or the file.
    pub what: String,
    /// Seconds of audio sent.
    pub seconds: f64,
}

/// What the media looked like from our side.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaStats {
    pub codec: Option<&'static str>,
    pub srtp: bool,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    pub mos: Option<f64>,
    /// The TURN relay's address our media went through, if one did.
    pub turn_relay: Option<String>,
    /// The ICE pair the media went over (`<type> <address> -> <type>
    /// <address>`, ours first), when ICE was done.
    pub ice: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dest: String,
    pub started_at: String,
    pub ended_at: String,
    /// The SIP transport: `UDP`, `TCP` or `TLS`.
    pub transport: Option<&'static str>,
    pub registered: Option<bool>,
    pub sip_code: Option<u16>,
    pub sip_reason: Option<String>,
    pub answered: bool,
    pub outcome: Outcome,
    pub exit_code: i32,
    /// Seconds from the INVITE to the final response.
    pub ring_seconds: f64,
    /// Seconds from the answer to the hang-up.
    pub talk_seconds: f64,
    /// Who hung up: `us`, `remote`, or null when there was no call.
    pub hangup_by: Option<&'static str>,
    pub silence_detected: Option<bool>,
    pub played: Vec<Played>,
    pub recording: Option<String>,
    pub transcript: Option<String>,
    pub transcript_engine: Option<&'static str>,
    pub media: MediaStats,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(dest: &str) -> Report {
        let now = now_rfc3339();
        Report {
            dest: dest.to_owned(),
            started_at: now.clone(),
            ended_at: now,
            transport: None,
            registered: None,
            sip_code: None,
            sip_reason: None,
            answered: false,
            outcome: Outcome::Network,
            exit_code: Outcome::Network.exit_code(),
            ring_seconds: 0.0,
            talk_seconds: 0.0,
            hangup_by: None,
            silence_detected: None,
            played: Vec::new(),
            recording: None,
            transcript: None,
            transcript_engine: None,
            media: MediaStats::default(),
            errors: Vec::new(),
        }
    }

    /// Ends the report with `outcome`.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = outcome;
        self.exit_code = outcome.exit_code();
        self.answered = self.answered || outcome == Outcome::Answered;
        self.ended_at = now_rfc3339();
    }

    /// The report as one line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"errors\":[\"report: {e}\"]}}"))
    }
}

/// UTC now as `2026-12-06T17:01:02.345Z` (civil date from the Unix day
/// count, H. Hinnant's algorithm: no time-zone crate for one format).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_codes() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_562_062, 345), "2026-12-06T13:01:02.345Z");
        assert_eq!(Outcome::of_code(200), Outcome::Answered);
        assert_eq!(Outcome::of_code(486).exit_code(), 10);
        assert_eq!(Outcome::of_code(487), Outcome::NoAnswer);
        assert_eq!(Outcome::of_code(403), Outcome::Rejected);
        assert_eq!(Outcome::of_code(488).exit_code(), 12);
    }
}

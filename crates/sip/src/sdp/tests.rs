use super::*;

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

const BARESIP: &str = "v=0
o=- 2907328226 1460617612 IN IP4 192.168.1.10
s=-
c=IN IP4 192.168.1.10
t=0 0
m=audio 10430 RTP/AVP 96 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1406424397 cname:a2b2c3d4
a=rtcp-mux
a=ptime:20
";

const LINPHONE: &str = "v=0
o=alice 3210 1453 IN IP4 10.0.0.5
s=Talk
c=IN IP4 10.0.0.5
t=0 0
a=ice-pwd:31ec21eb38b2ec6d36e8dc7b
a=ice-ufrag:0bf8e5ea
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 SILK/16000
a=rtpmap:98 speex/16000
a=fmtp:98 vbr=on
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 nack sli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:97 nack pli
";

const DESK_PHONE: &str = "v=0
o=- 20022 20022 IN IP4 172.16.0.21
s=SDP data
c=IN IP4 172.16.0.21
t=0 0
m=audio 11796 RTP/AVP 9 0 8 18 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=ptime:20
a=sendrecv
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
";

/// sipp's built-in uac scenario after `[media_ip]` etc. are substituted.
const SIPP: &str = "v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

const IPV6: &str = "v=0
o=- 1 2 IN IP6 ::1
s=-
c=IN IP6 ::1
t=0 0
m=audio 5004 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
";

const HOLD_SENDONLY: &str = "v=0
o=- 20022 20023 IN IP4 172.16.0.21
s=-
c=IN IP4 172.16.0.21
t=0 0
m=audio 11796 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendonly
";

const HOLD_INACTIVE: &str = "v=0
o=- 1 3 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 4000 RTP/AVP 0
a=inactive
";

const HOLD_ZERO: &str = "v=0
o=- 1 3 IN IP4 10.1.1.1
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 8
";

/// No `t=`, session attributes before `c=`, `c=` after `t=`'s place.
const SLOPPY: &str = "v=0
o=- 7 7 IN IP4 10.9.9.9
s=-
a=sendrecv
a=ptime:30
c=IN IP4 10.9.9.9
m=audio 4002 RTP/AVP 0 8
";

const MEDIA_C: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4004 RTP/AVP 8
c=IN IP4 203.0.113.7
a=recvonly
";

const NO_RTPMAP: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4006 RTP/AVP 8 0 96 13
";

const TE96: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4008 RTP/AVP 0 96
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
";

const PCMA_ONLY: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4010 RTP/AVP 8
a=rtpmap:8 PCMA/8000
";

/// A video-first offer: audio is the second m= line.
const VIDEO_FIRST: &str = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=video 5000 RTP/AVP 96
a=rtpmap:96 H264/90000
m=audio 5002 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
m=application 5004 UDP/BFCP *
";

fn pcm(pt: u8) -> AudioCodec {
    let name = if pt == 0 { "PCMU" } else { "PCMA" };
    AudioCodec {
        payload_type: pt,
        name: name.into(),
        clock_rate: 8000,
    }
}

struct Case {
    name: &'static str,
    sdp: &'static str,
    crlf: bool,
    connection: &'static str,
    audio_port: u16,
    audio_index: usize,
    pts: &'static [u8],
    te: Option<u8>,
    direction: Direction,
    ptime: Option<u32>,
    rtcp_mux: bool,
    media: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "baresip",
        sdp: BARESIP,
        crlf: true,
        connection: "192.168.1.10",
        audio_port: 10430,
        audio_index: 0,
        pts: &[96, 0, 8],
        te: Some(101),
        direction: Direction::SendRecv,
        ptime: Some(20),
        rtcp_mux: true,
        media: 1,
    },
    Case {
        name: "linphone",
        sdp: LINPHONE,
        crlf: true,
        connection: "10.0.0.5",
        audio_port: 7078,
        audio_index: 0,
        pts: &[96, 97, 98, 0, 8, 18],
        te: Some(100),
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 2,
    },
    Case {
        name: "desk phone",
        sdp: DESK_PHONE,
        crlf: true,
        connection: "172.16.0.21",
        audio_port: 11796,
        audio_index: 0,
        pts: &[9, 0, 8, 18],
        te: Some(101),
        direction: Direction::SendRecv,
        ptime: Some(20),
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "sipp",
        sdp: SIPP,
        crlf: true,
        connection: "127.0.0.1",
        audio_port: 6000,
        audio_index: 0,
        pts: &[0],
        te: None,
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "ipv6",
        sdp: IPV6,
        crlf: true,
        connection: "::1",
        audio_port: 5004,
        audio_index: 0,
        pts: &[8, 0],
        te: Some(101),
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "hold sendonly",
        sdp: HOLD_SENDONLY,
        crlf: true,
        connection: "172.16.0.21",
        audio_port: 11796,
        audio_index: 0,
        pts: &[0],
        te: Some(101),
        direction: Direction::SendOnly,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "hold inactive",
        sdp: HOLD_INACTIVE,
        crlf: true,
        connection: "10.1.1.1",
        audio_port: 4000,
        audio_index: 0,
        pts: &[0],
        te: None,
        direction: Direction::Inactive,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "hold c=0.0.0.0",
        sdp: HOLD_ZERO,
        crlf: true,
        connection: "0.0.0.0",
        audio_port: 4000,
        audio_index: 0,
        pts: &[8],
        te: None,
        direction: Direction::SendOnly,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "LF only, no t=, a= before c=",
        sdp: SLOPPY,
        crlf: false,
        connection: "10.9.9.9",
        audio_port: 4002,
        audio_index: 0,
        pts: &[0, 8],
        te: None,
        direction: Direction::SendRecv,
        ptime: Some(30),
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "LF-only desk phone",
        sdp: DESK_PHONE,
        crlf: false,
        connection: "172.16.0.21",
        audio_port: 11796,
        audio_index: 0,
        pts: &[9, 0, 8, 18],
        te: Some(101),
        direction: Direction::SendRecv,
        ptime: Some(20),
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "media-level c= overrides",
        sdp: MEDIA_C,
        crlf: true,
        connection: "203.0.113.7",
        audio_port: 4004,
        audio_index: 0,
        pts: &[8],
        te: None,
        direction: Direction::RecvOnly,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "no rtpmap for static PTs",
        sdp: NO_RTPMAP,
        crlf: true,
        connection: "10.0.0.1",
        audio_port: 4006,
        audio_index: 0,
        pts: &[8, 0, 13],
        te: None,
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "telephone-event at 96",
        sdp: TE96,
        crlf: true,
        connection: "10.0.0.1",
        audio_port: 4008,
        audio_index: 0,
        pts: &[0],
        te: Some(96),
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "PCMA only",
        sdp: PCMA_ONLY,
        crlf: true,
        connection: "10.0.0.1",
        audio_port: 4010,
        audio_index: 0,
        pts: &[8],
        te: None,
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 1,
    },
    Case {
        name: "video first",
        sdp: VIDEO_FIRST,
        crlf: true,
        connection: "10.0.0.1",
        audio_port: 5002,
        audio_index: 1,
        pts: &[0],
        te: Some(101),
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        media: 3,
    },
];

#[test]
fn parses_real_world_offers() {
    for case in CASES {
        let text = if case.crlf {
            crlf(case.sdp)
        } else {
            case.sdp.to_owned()
        };
        let d =
            parse(text.as_bytes()).unwrap_or_else(|e| panic!("{}: parse failed: {e}", case.name));
        let n = case.name;
        assert_eq!(d.connection, Some(case.connection.parse().unwrap()), "{n}");
        assert_eq!(d.audio_port, case.audio_port, "{n}");
        assert_eq!(d.audio_index, Some(case.audio_index), "{n}");
        let pts: Vec<u8> = d.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(pts, case.pts, "{n}");
        assert_eq!(d.telephone_event, case.te, "{n}");
        assert_eq!(d.direction, case.direction, "{n}");
        assert_eq!(d.ptime, case.ptime, "{n}");
        assert_eq!(d.rtcp_mux, case.rtcp_mux, "{n}");
        assert_eq!(d.media.len(), case.media, "{n}");
        assert_eq!(d.media[case.audio_index].media, "audio", "{n}");
        for c in &d.codecs {
            assert_eq!(c.name, c.name.to_ascii_uppercase(), "{n}");
        }
    }
}

#[test]
fn codec_details() {
    let d = parse(crlf(BARESIP).as_bytes()).unwrap();
    assert_eq!(d.origin_session_id, 2907328226);
    assert_eq!(d.origin_version, 1460617612);
    assert_eq!(
        d.codecs[0],
        AudioCodec {
            payload_type: 96,
            name: "OPUS".into(),
            clock_rate: 48000
        }
    );
    assert_eq!(&d.codecs[1..], &[pcm(0), pcm(8)]);

    let d = parse(crlf(NO_RTPMAP).as_bytes()).unwrap();
    assert_eq!(&d.codecs[..2], &[pcm(8), pcm(0)]);
    assert_eq!(d.codecs[2].name, "CN");

    let d = parse(crlf(LINPHONE).as_bytes()).unwrap();
    assert_eq!(d.media[1].media, "video");
    assert_eq!(d.media[1].port, 9078);
    assert_eq!(d.media[1].proto, "RTP/AVP");
    assert_eq!(d.media[1].formats, ["96", "97"]);
    assert_eq!(d.codecs[1].name, "SILK");
}

#[test]
fn remote_rtp_address() {
    let d = parse(SIPP.as_bytes()).unwrap();
    assert_eq!(d.remote_rtp(), Some("127.0.0.1:6000".parse().unwrap()));
    let d = parse(IPV6.as_bytes()).unwrap();
    assert_eq!(d.remote_rtp(), Some("[::1]:5004".parse().unwrap()));
    let d = parse(HOLD_ZERO.as_bytes()).unwrap();
    assert_eq!(d.remote_rtp(), None);
}

#[test]
fn tolerated_oddities() {
    let cases: &[(&str, &str)] = &[
        (
            "missing o=",
            "v=0\ns=-\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\n",
        ),
        ("no v=", "c=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0"),
        (
            "blank lines",
            "v=0\r\n\r\nc=IN IP4 1.2.3.4\r\n\r\nm=audio 1 RTP/AVP 0\r\n\r\n",
        ),
        (
            "unknown lines",
            "v=0\nc=IN IP4 1.2.3.4\nx=what\nz=0\nm=audio 1 RTP/AVP 0\n",
        ),
        (
            "ttl and port count",
            "v=0\nc=IN IP4 1.2.3.4/127\nm=audio 1/2 RTP/AVP 0\n",
        ),
        (
            "bracketed IPv6",
            "v=0\nc=IN IP6 [2001:db8::1]\nm=audio 1 RTP/AVP 0\n",
        ),
        (
            "bad attributes",
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=rtpmap:x\na=ptime:y\na=\n",
        ),
        (
            "bad c= on video",
            "v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 96\nc=IN IP4 host.example\n",
        ),
        (
            "trailing spaces",
            "v=0 \nc=IN IP4 1.2.3.4  \nm=audio 1 RTP/AVP 0 \n",
        ),
    ];
    for (name, sdp) in cases {
        let d = parse(sdp.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.codecs, [pcm(0)], "{name}");
        assert_eq!(d.audio_port, 1, "{name}");
    }
    let d = parse(b"v=0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\na=ptime:20.0\n").unwrap();
    assert_eq!(d.ptime, Some(20));
    // A declined audio stream needs no address.
    let d = parse(b"v=0\nm=audio 0 RTP/AVP 0\n").unwrap();
    assert_eq!((d.audio_port, d.connection), (0, None));
}

/// Whether an error is the one a case expects.
type Check = fn(&SdpError) -> bool;

#[test]
fn rejects_malformed() {
    let cases: &[(&str, &[u8], Check)] = &[
        ("empty", b"", |e| *e == SdpError::Empty),
        ("whitespace", b"\r\n \r\n", |e| *e == SdpError::Empty),
        ("not utf-8", b"v=0\r\n\xff\xfe\x00\x81", |e| {
            *e == SdpError::NotUtf8
        }),
        ("binary", b"\x00\x01\x02\x03garbage\x7f", |e| {
            matches!(e, SdpError::Malformed(_))
        }),
        ("text", b"hello world", |e| {
            matches!(e, SdpError::Malformed(_))
        }),
        (
            "version",
            b"v=1\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(m) if m.contains("line 1")),
        ),
        (
            "port",
            b"v=0\nc=IN IP4 1.2.3.4\nm=audio abc RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(m) if m.contains("line 3") && m.contains("m=audio abc")),
        ),
        (
            "port range",
            b"v=0\nc=IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(_)),
        ),
        ("short m=", b"v=0\nc=IN IP4 1.2.3.4\nm=audio 4000", |e| {
            matches!(e, SdpError::Malformed(_))
        }),
        (
            "origin",
            b"v=0\no=- abc 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(m) if m.contains("o=-")),
        ),
        (
            "c= address",
            b"v=0\nc=IN IP4 pbx.example.com\nm=audio 1 RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(m) if m.contains("c=IN")),
        ),
        ("c= short", b"v=0\nc=IN IP4\nm=audio 1 RTP/AVP 0", |e| {
            matches!(e, SdpError::Malformed(_))
        }),
        (
            "no audio",
            b"v=0\nc=IN IP4 1.2.3.4\nm=video 1 RTP/AVP 96",
            |e| *e == SdpError::NoAudio,
        ),
        (
            "no m= at all",
            b"v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\n",
            |e| *e == SdpError::NoAudio,
        ),
        ("no connection", b"v=0\nm=audio 1 RTP/AVP 0", |e| {
            *e == SdpError::NoConnection
        }),
        // sipp's template before substitution.
        (
            "sipp template",
            b"v=0\nc=IN IP[media_ip_type] [media_ip]\nm=audio [media_port] RTP/AVP 0",
            |e| matches!(e, SdpError::Malformed(_)),
        ),
    ];
    for (name, body, check) in cases {
        let err = parse(body).expect_err(name);
        assert!(check(&err), "{name}: unexpected {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn every_prefix_parses_without_panic() {
    for sdp in [LINPHONE, BARESIP, VIDEO_FIRST, IPV6] {
        let text = crlf(sdp);
        let bytes = text.as_bytes();
        for end in 0..=bytes.len() {
            let _ = parse(&bytes[..end]);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    // xorshift over an SDP-flavoured alphabet, plus raw bytes.
    let alphabet = b"vocmat=:/ 0123456789.IPN46\r\n\xc3\xa9\xffaudio";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 200) as usize;
        let body: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = parse(&body);
        let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = parse(&raw);
    }
}

fn local4() -> LocalMedia {
    LocalMedia {
        address: "198.51.100.2".parse().unwrap(),
        port: 30000,
        session_id: 42,
        version: 1,
    }
}

#[test]
fn offer_exact_text() {
    let sdp = offer(
        &local4(),
        &[(0, "PCMU"), (8, "PCMA")],
        Some(101),
        Direction::SendRecv,
        20,
    );
    assert_eq!(
        sdp,
        "v=0\r\n\
         o=switchboard 42 1 IN IP4 198.51.100.2\r\n\
         s=switchboard\r\n\
         c=IN IP4 198.51.100.2\r\n\
         t=0 0\r\n\
         m=audio 30000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
}

#[test]
fn offer_parses_back() {
    let local = LocalMedia {
        address: "2001:db8::5".parse().unwrap(),
        port: 40000,
        session_id: 7,
        version: 9,
    };
    let sdp = offer(&local, &[(8, "PCMA")], None, Direction::SendOnly, 20);
    assert!(sdp.contains("c=IN IP6 2001:db8::5\r\n"));
    assert!(sdp.contains("o=switchboard 7 9 IN IP6 2001:db8::5\r\n"));
    assert!(!sdp.contains("rtcp-mux"));
    let d = parse(sdp.as_bytes()).unwrap();
    assert_eq!(d.origin_session_id, 7);
    assert_eq!(d.origin_version, 9);
    assert_eq!(d.connection, Some(local.address));
    assert_eq!(d.audio_port, 40000);
    assert_eq!(d.codecs, [pcm(8)]);
    assert_eq!(d.telephone_event, None);
    assert_eq!(d.direction, Direction::SendOnly);
    assert_eq!(d.ptime, Some(20));
    assert!(!d.rtcp_mux);
    assert_eq!(d.media.len(), 1);
}

#[test]
fn answers_parse_back() {
    struct AnswerCase {
        name: &'static str,
        sdp: &'static str,
        supported: &'static [&'static str],
        chosen_pt: u8,
        override_: Option<Direction>,
        direction: Direction,
    }
    let cases = [
        AnswerCase {
            name: "baresip",
            sdp: BARESIP,
            supported: &["PCMU", "PCMA"],
            chosen_pt: 0,
            override_: None,
            direction: Direction::SendRecv,
        },
        AnswerCase {
            name: "linphone, offer order wins",
            sdp: LINPHONE,
            supported: &["pcma", "pcmu"],
            chosen_pt: 0,
            override_: None,
            direction: Direction::SendRecv,
        },
        AnswerCase {
            name: "desk phone",
            sdp: DESK_PHONE,
            supported: &["PCMA"],
            chosen_pt: 8,
            override_: None,
            direction: Direction::SendRecv,
        },
        AnswerCase {
            name: "hold",
            sdp: HOLD_SENDONLY,
            supported: &["PCMU"],
            chosen_pt: 0,
            override_: None,
            direction: Direction::RecvOnly,
        },
        AnswerCase {
            name: "hold c=0.0.0.0",
            sdp: HOLD_ZERO,
            supported: &["PCMU", "PCMA"],
            chosen_pt: 8,
            override_: None,
            direction: Direction::RecvOnly,
        },
        AnswerCase {
            name: "override",
            sdp: TE96,
            supported: &["PCMU"],
            chosen_pt: 0,
            override_: Some(Direction::Inactive),
            direction: Direction::Inactive,
        },
        AnswerCase {
            name: "video first",
            sdp: VIDEO_FIRST,
            supported: &["PCMU"],
            chosen_pt: 0,
            override_: None,
            direction: Direction::SendRecv,
        },
        AnswerCase {
            name: "ipv6",
            sdp: IPV6,
            supported: &["PCMU", "PCMA"],
            chosen_pt: 8,
            override_: None,
            direction: Direction::SendRecv,
        },
    ];
    let local = local4();
    for case in cases {
        let n = case.name;
        let remote = parse(crlf(case.sdp).as_bytes()).unwrap();
        let codec = choose_codec(&remote, case.supported).unwrap();
        assert_eq!(codec.payload_type, case.chosen_pt, "{n}");
        let sdp = answer(
            &local,
            &remote,
            (codec.payload_type, &codec.name),
            case.override_,
            20,
        );
        assert!(sdp.ends_with("\r\n") && !sdp.contains("\n\n"), "{n}");
        assert_eq!(sdp.matches('\n').count(), sdp.matches("\r\n").count());
        let d = parse(sdp.as_bytes()).unwrap();
        assert_eq!(d.connection, Some(local.address), "{n}");
        assert_eq!(d.audio_port, local.port, "{n}");
        assert_eq!(d.audio_index, remote.audio_index, "{n}");
        assert_eq!(d.codecs, [pcm(case.chosen_pt)], "{n}");
        assert_eq!(d.telephone_event, remote.telephone_event, "{n}");
        assert_eq!(d.direction, case.direction, "{n}");
        assert_eq!(d.ptime, Some(20), "{n}");
        assert_eq!(d.media.len(), remote.media.len(), "{n}");
        for (i, (ours, theirs)) in d.media.iter().zip(&remote.media).enumerate() {
            assert_eq!(ours.media, theirs.media, "{n}");
            assert_eq!(ours.proto, theirs.proto, "{n}");
            if Some(i) != remote.audio_index {
                assert_eq!(ours.port, 0, "{n}: m= line {i} not declined");
                assert_eq!(ours.formats, theirs.formats[..1], "{n}");
            }
        }
    }
}

#[test]
fn answer_text_declines_video() {
    let remote = parse(crlf(LINPHONE).as_bytes()).unwrap();
    let sdp = answer(&local4(), &remote, (8, "PCMA"), None, 20);
    assert!(
        sdp.ends_with(
            "m=audio 30000 RTP/AVP 8 100\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:100 telephone-event/8000\r\n\
             a=fmtp:100 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n\
             m=video 0 RTP/AVP 96\r\n"
        ),
        "{sdp}"
    );
}

#[test]
fn answer_declines_declined_audio() {
    let remote =
        parse(b"v=0\nm=audio 0 RTP/AVP 0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 1.2.3.4\n").unwrap();
    let sdp = answer(&local4(), &remote, (0, "PCMU"), None, 20);
    let d = parse(sdp.as_bytes()).unwrap();
    assert_eq!(d.media.len(), 2);
    assert!(d.media.iter().all(|m| m.port == 0));
}

#[test]
fn choose_codec_keeps_offer_order_and_pt() {
    let remote = parse(crlf(DESK_PHONE).as_bytes()).unwrap();
    assert_eq!(choose_codec(&remote, &["PCMA", "PCMU"]), Some(&pcm(0)));
    assert_eq!(choose_codec(&remote, &["g722"]).unwrap().payload_type, 9);
    assert_eq!(choose_codec(&remote, &["opus"]), None);
    assert_eq!(choose_codec(&remote, &[]), None);
    let remote = parse(crlf(PCMA_ONLY).as_bytes()).unwrap();
    assert_eq!(choose_codec(&remote, &["PCMU", "PCMA"]), Some(&pcm(8)));
    assert_eq!(choose_codec(&remote, &["PCMU"]), None);
}

#[test]
fn direction_helpers() {
    let table = [
        (Direction::SendRecv, Direction::SendRecv, "sendrecv"),
        (Direction::SendOnly, Direction::RecvOnly, "sendonly"),
        (Direction::RecvOnly, Direction::SendOnly, "recvonly"),
        (Direction::Inactive, Direction::Inactive, "inactive"),
    ];
    for (d, rev, s) in table {
        assert_eq!(d.reversed(), rev);
        assert_eq!(d.as_str(), s);
        assert_eq!(d.to_string(), s);
        assert_eq!(Direction::from_attr(&s.to_ascii_uppercase()), Some(d));
    }
}

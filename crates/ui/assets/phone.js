// Switchboard browser phone (/phone): registers over secure WebSocket with
// JsSIP, dials, answers, hangs up, sends DTMF (RFC 4733 in the media, which
// the RTP manager detects), and shows the call's state and audio levels.
// No inline script: the page's Content-Security-Policy allows scripts from
// this server and connections to this server and UI_SIP_WSS_URL only.
//
// The page's state is mirrored into data-registration and data-call on
// #phone, and window.switchboardPhone holds the live objects (UA, session,
// streams) for whoever debugs a call from the browser console.
(function () {
  "use strict";

  var root = document.getElementById("phone");
  if (!root || !window.JsSIP) return;
  var JsSIP = window.JsSIP;
  JsSIP.debug.disable("JsSIP:*");

  function $(id) { return document.getElementById(id); }
  var wssUrl = root.getAttribute("data-wss-url");
  var domain = root.getAttribute("data-domain");
  var remoteAudio = $("phone-remote-audio");
  var keys = Array.prototype.slice.call(document.querySelectorAll("#phone-keypad [data-dtmf]"));

  // The browser's media: no STUN or TURN server. The RTP manager is
  // ICE-lite on addresses the browser can reach, so the browser's host
  // candidates and the manager's answers to its checks are all it takes.
  var pcConfig = { iceServers: [], rtcpMuxPolicy: "require" };
  var media = { audio: true, video: false };

  var phone = window.switchboardPhone = {
    ua: null, session: null, remoteStream: null, localStream: null,
  };
  var audioCtx = null;
  var meters = [];

  function setText(id, text) { $(id).textContent = text; }

  function registration(state, detail) {
    root.setAttribute("data-registration", state);
    var words = {
      unregistered: "not registered", connecting: "connecting…",
      registered: "registered as " + (phone.ua ? phone.ua.configuration.uri.toString() : ""),
      failed: "failed", disconnected: "connection lost",
    };
    setText("phone-reg-state", (words[state] || state) + (detail ? ": " + detail : ""));
    var registered = state === "registered";
    $("phone-call").disabled = !registered || !!phone.session;
    $("phone-unregister").disabled = !phone.ua;
  }

  function call(state, detail) {
    root.setAttribute("data-call", state);
    var words = {
      idle: "idle", calling: "calling…", ringing: "ringing", incoming: "incoming",
      answering: "answering…", "in-call": "in call", ended: "ended", failed: "failed",
    };
    setText("phone-call-state", (words[state] || state) + (detail ? ": " + detail : ""));
    var live = state === "calling" || state === "ringing" || state === "in-call" ||
      state === "answering" || state === "incoming";
    $("phone-hangup").disabled = !live;
    keys.forEach(function (k) { k.disabled = state !== "in-call"; });
    $("phone-incoming").hidden = state !== "incoming";
    $("phone-call").disabled = live || root.getAttribute("data-registration") !== "registered";
  }

  // An audio level meter over a stream: RMS of the waveform, 10 times a second.
  function meter(stream, id) {
    try {
      audioCtx = audioCtx || new AudioContext();
      if (audioCtx.state === "suspended") audioCtx.resume();
      var analyser = audioCtx.createAnalyser();
      analyser.fftSize = 1024;
      audioCtx.createMediaStreamSource(stream).connect(analyser);
      var buf = new Float32Array(analyser.fftSize);
      var timer = setInterval(function () {
        analyser.getFloatTimeDomainData(buf);
        var sum = 0;
        for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        $(id).value = Math.min(1, Math.sqrt(sum / buf.length) * 4);
      }, 100);
      meters.push({ timer: timer, id: id, analyser: analyser });
    } catch (e) {
      // no Web Audio: the call works, the meter stays at 0
    }
  }

  function stopMeters() {
    meters.forEach(function (m) { clearInterval(m.timer); $(m.id).value = 0; });
    meters = [];
  }

  // The remote audio plays in the page's <audio>; both directions get a meter.
  function watchMedia(pc) {
    pc.addEventListener("track", function (ev) {
      var stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      phone.remoteStream = stream;
      remoteAudio.srcObject = stream;
      var played = remoteAudio.play();
      if (played && played.catch) played.catch(function () {});
      meter(stream, "phone-remote-level");
    });
  }

  function localMeter(session) {
    var pc = session.connection;
    if (!pc) return;
    var tracks = pc.getSenders().map(function (s) { return s.track; }).filter(Boolean);
    if (tracks.length) {
      phone.localStream = new MediaStream(tracks);
      meter(phone.localStream, "phone-mic-level");
    }
  }

  function cause(ev) {
    if (ev && ev.message && ev.message.status_code) {
      return ev.message.status_code + " " + (ev.message.reason_phrase || ev.cause || "");
    }
    return ev && ev.cause ? String(ev.cause) : "";
  }

  function adopt(session) {
    phone.session = session;
    session.on("peerconnection", function (ev) { watchMedia(ev.peerconnection); });
    if (session.connection) watchMedia(session.connection);
    session.on("progress", function () {
      if (session.direction === "outgoing") call("ringing");
    });
    session.on("accepted", function () { call("in-call"); });
    session.on("confirmed", function () { call("in-call"); localMeter(session); });
    function over(state) {
      return function (ev) {
        if (phone.session !== session) return;
        phone.session = null;
        phone.remoteStream = null;
        phone.localStream = null;
        remoteAudio.srcObject = null;
        stopMeters();
        call(state, cause(ev));
      };
    }
    session.on("ended", over("ended"));
    session.on("failed", over("failed"));
  }

  function start(user, password) {
    if (phone.ua) phone.ua.stop();
    var ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(wssUrl)],
      uri: "sip:" + user + "@" + domain,
      authorization_user: user,
      password: password,
      register: true,
      session_timers: false,
      user_agent: "Switchboard browser phone (JsSIP " + JsSIP.version + ")",
    });
    phone.ua = ua;
    registration("connecting");
    ua.on("registered", function () { registration("registered"); });
    ua.on("unregistered", function () { registration("unregistered"); });
    ua.on("registrationFailed", function (ev) { registration("failed", cause(ev)); });
    ua.on("disconnected", function () {
      if (phone.ua === ua) registration("disconnected");
    });
    ua.on("newRTCSession", function (ev) {
      var session = ev.session;
      if (ev.originator === "remote") {
        if (phone.session) {
          session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
          return;
        }
        adopt(session);
        setText("phone-incoming-from", session.remote_identity.uri.toString());
        call("incoming");
      }
    });
    ua.start();
  }

  $("phone-register").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var user = $("phone-user").value.trim();
    if (!user) return;
    start(user, $("phone-password").value);
  });

  $("phone-unregister").addEventListener("click", function () {
    if (!phone.ua) return;
    var ua = phone.ua;
    phone.ua = null;
    ua.stop();
    registration("unregistered");
  });

  $("phone-dial").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var target = $("phone-target").value.trim();
    if (!phone.ua || !target || phone.session) return;
    call("calling");
    try {
      adopt(phone.ua.call(target, { mediaConstraints: media, pcConfig: pcConfig }));
    } catch (e) {
      phone.session = null;
      call("failed", e.message || String(e));
    }
  });

  $("phone-answer").addEventListener("click", function () {
    if (!phone.session) return;
    call("answering");
    phone.session.answer({ mediaConstraints: media, pcConfig: pcConfig });
  });

  $("phone-decline").addEventListener("click", function () {
    if (phone.session) phone.session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
  });

  $("phone-hangup").addEventListener("click", function () {
    if (phone.session) phone.session.terminate();
  });

  keys.forEach(function (k) {
    k.addEventListener("click", function () {
      if (phone.session && phone.session.isEstablished()) {
        phone.session.sendDTMF(k.getAttribute("data-dtmf"), { transportType: "RFC2833" });
      }
    });
  });

  window.addEventListener("beforeunload", function () { if (phone.ua) phone.ua.stop(); });
})();

/* grip-client.js: browser clients for grip-asgi's reliable channels. No build step, no
 * dependencies: <script src="grip-client.js"></script> defines window.GripClient with
 *
 * - ReliableSocket: a WebSocket that delivers every event once and in order, repairs gaps,
 *   reconnects with backoff and resumes where it was, even after a page reload;
 * - ReliableEventSource: an EventSource that resumes after a reload and drops duplicates.
 *
 *   const socket = new GripClient.ReliableSocket("/chat/room", {
 *     onevent: (e) => {},    // {channel, id, data, event}: once each, in id order per channel
 *     onreset: (r) => {},    // {channel, id}: what was missed is no longer stored
 *     onpresence: (p) => {}, // the members / join / leave message; socket.members keeps them
 *     onmessage: (text) => {}, // the application's own messages
 *     onstatus: (s) => {},   // connecting, open, reconnecting, closed; also socket.state
 *     onclose: (code, reason) => {}, // the server closed for good: no reconnect (below)
 *   });                      // also: channels, storageKey, backoff: {min: 500, max: 10000} (ms)
 *   new GripClient.ReliableEventSource("/events/news", {events: ["msg"], onevent, onreset});
 *
 * Positions persist in sessionStorage (key: the endpoint's URL), so a reload resumes.
 * onstatus is called in a microtask after each change, so even the first one ("connecting")
 * comes after the constructor has returned: a handler may use the socket it was given to.
 * A close from the server with an application code (4000-4999, e.g. 4000 "left the room") or
 * 1008 (policy violation) is final: onclose(code, reason), status "closed", no reconnection.
 * Any other close or a network error is a drop: the socket reconnects with backoff. */
(function (global) {
  "use strict";

  const RESUME_PARAM = "last_event_id";

  function load(key) {
    try {
      return JSON.parse(global.sessionStorage.getItem(key));
    } catch (err) {
      return null; // storage disabled or unreadable: resume within this page only
    }
  }

  function store(key, value) {
    try {
      global.sessionStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      /* storage full or disabled: resume within this page only */
    }
  }

  // Positions {room: 41, news: 3} <-> "room:41,news:3" (the form of SSE ids).
  function formatPositions(positions) {
    return Object.keys(positions).map((c) => c + ":" + positions[c]).join(",");
  }

  function parsePositions(text) {
    const positions = {};
    for (const part of (text || "").split(",")) {
      const at = part.lastIndexOf(":");
      const id = Number(part.slice(at + 1));
      if (at > 0 && Number.isSafeInteger(id) && id >= 0) positions[part.slice(0, at).trim()] = id;
    }
    return positions;
  }

  const isId = (id) => Number.isSafeInteger(id) && id >= 0;
  const isEvent = (e) => !!e && typeof e.channel === "string" && isId(e.id) &&
    typeof e.data === "string" && (e.event == null || typeof e.event === "string");
  const isFinalClose = (code) => (code >= 4000 && code <= 4999) || code === 1008;

  function withPositions(url, positions) {
    const resumed = new URL(url);
    const text = formatPositions(positions);
    if (text) resumed.searchParams.set(RESUME_PARAM, text);
    return resumed.href;
  }

  // A handler that throws must not break the client's state: report it and go on.
  function call(handler, ...args) {
    if (!handler) return;
    try {
      handler(...args);
    } catch (err) {
      setTimeout(() => { throw err; });
    }
  }

  class ReliableSocket {
    constructor(url, options = {}) {
      const endpoint = new URL(url, global.location.href);
      if (endpoint.protocol === "http:") endpoint.protocol = "ws:";
      if (endpoint.protocol === "https:") endpoint.protocol = "wss:";
      endpoint.searchParams.delete(RESUME_PARAM);
      this.url = endpoint.href;
      this.options = options;
      this.storageKey = options.storageKey || this.url;
      this.positions = Object.assign({}, load(this.storageKey));
      if (options.channels) {
        for (const c of Object.keys(this.positions)) if (!options.channels.includes(c)) delete this.positions[c];
      }
      this.members = new Map(); // channel -> Map(client id -> {client, user, info})
      this.stats = { delivered: 0, duplicates: 0, repairs: 0, reconnects: 0, resets: 0 };
      this._backoff = Object.assign({ min: 500, max: 10000 }, options.backoff);
      this._attempt = 0;
      this._everOpened = false;
      this._closed = false;
      this._connect();
    }

    send(text) {
      // Application messages are not stored: false while (re)connecting, the caller decides.
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
      this._ws.send(text);
      return true;
    }

    close() {
      this._closed = true;
      clearTimeout(this._timer);
      if (this._ws) this._ws.close(1000);
      else this._status("closed");
    }

    _status(state) {
      this.state = state;
      queueMicrotask(() => call(this.options.onstatus, state)); // after the constructor too
    }

    _connect() {
      this._early = {}; // per channel: Map(id -> event) past a gap; the resume replays them
      this._syncing = new Set();
      const ws = (this._ws = new WebSocket(withPositions(this.url, this.positions)));
      let openedAt = 0;
      this._status("connecting");
      ws.onopen = () => {
        openedAt = Date.now();
        if (this._everOpened) this.stats.reconnects++;
        this._everOpened = true;
        this._status("open");
      };
      ws.onmessage = (message) => this._receive(message.data);
      ws.onclose = (closing) => {
        if (this._ws !== ws) return;
        this._ws = null;
        if (this._closed) return this._status("closed");
        if (isFinalClose(closing.code)) {
          this._closed = true;
          this._status("closed");
          const { code, reason } = closing;
          return void queueMicrotask(() => call(this.options.onclose, code, reason)); // after "closed"
        }
        if (openedAt && Date.now() - openedAt >= this._backoff.max) this._attempt = 0; // it stayed up
        const delay = Math.min(this._backoff.max, this._backoff.min * 2 ** Math.min(this._attempt++, 32));
        this._status("reconnecting");
        this._timer = setTimeout(() => this._connect(), delay * (0.5 + Math.random() / 2));
      };
    }

    _receive(text) {
      let m = null;
      try {
        m = typeof text === "string" ? JSON.parse(text) : null;
      } catch (err) { /* not JSON: the application's */ }
      if (!m || typeof m !== "object" || Array.isArray(m)) return call(this.options.onmessage, text);
      if (m.grip === undefined) return isEvent(m) ? this._event(m) : call(this.options.onmessage, text);
      if (m.grip === "events" && Array.isArray(m.events)) {
        for (const e of m.events) {
          if (isEvent(e)) this._event(e);
          else console.warn("grip-client: malformed event in a batch skipped:", JSON.stringify(e));
        }
        return;
      }
      if (m.grip === "tip" && m.ids && Object.values(m.ids).every(isId)) return this._tip(m.ids);
      if (m.grip === "reset" && typeof m.channel === "string" && isId(m.id)) return this._reset(m.channel, m.id);
      if (m.grip === "members" && Array.isArray(m.members)) {
        this.members.set(m.channel, new Map(m.members.map((member) => [member.client, member])));
        return call(this.options.onpresence, m);
      }
      if (m.grip === "join" || m.grip === "leave") {
        if (!this.members.has(m.channel)) this.members.set(m.channel, new Map());
        const members = this.members.get(m.channel);
        if (m.grip === "join") members.set(m.client, { client: m.client, user: m.user, info: m.info });
        else members.delete(m.client);
        return call(this.options.onpresence, m);
      }
      // An error reply, a malformed or a newer server's message: say so, change nothing.
      console.warn("grip-client: protocol message ignored:", text);
    }

    _event(e) {
      const position = this.positions[e.channel];
      const early = this._early[e.channel] || (this._early[e.channel] = new Map());
      if (position !== undefined && (e.id <= position || early.has(e.id))) {
        this.stats.duplicates++;
      } else if (position !== undefined && e.id > position + 1) {
        early.set(e.id, e);
        this._sync([e.channel]);
      } else {
        this._deliver(e);
      }
    }

    // e, then the early events that follow it without a gap.
    _deliver(e) {
      const early = this._early[e.channel];
      for (; e; e = early && early.get(e.id + 1)) {
        if (early) early.delete(e.id);
        this.positions[e.channel] = e.id;
        this.stats.delivered++;
        call(this.options.onevent, e);
      }
      store(this.storageKey, this.positions);
    }

    _tip(ids) {
      this._syncing.clear(); // a sync's reply ends with a tip
      const behind = Object.keys(this._early).filter((c) => this._early[c].size);
      for (const c of Object.keys(ids)) {
        // A new channel starts at the tip: the server subscribed this client from there.
        if (this.positions[c] === undefined) this.positions[c] = ids[c];
        else if (this.positions[c] < ids[c] && !behind.includes(c)) behind.push(c);
      }
      store(this.storageKey, this.positions);
      this._sync(behind);
    }

    _reset(channel, id) {
      const position = this.positions[channel];
      if (position !== undefined && id <= position) return void this.stats.duplicates++; // a repeat
      this.positions[channel] = id;
      this.stats.resets++;
      const early = this._early[channel] || new Map();
      for (const earlier of [...early.keys()].filter((k) => k <= id)) early.delete(earlier);
      call(this.options.onreset, { channel, id });
      const next = early.get(id + 1);
      if (next) this._deliver(next);
      else store(this.storageKey, this.positions);
    }

    // One sync for the channels given that are not syncing already (they count as repairs).
    _sync(channels) {
      const wanted = {};
      for (const c of channels) if (!this._syncing.has(c)) wanted[c] = this.positions[c];
      if (!Object.keys(wanted).length || !this._ws || this._ws.readyState !== WebSocket.OPEN) return;
      Object.keys(wanted).forEach((c) => this._syncing.add(c));
      this.stats.repairs++;
      this._ws.send(JSON.stringify({ grip: "sync", [RESUME_PARAM]: formatPositions(wanted) }));
    }
  }

  class ReliableEventSource {
    constructor(url, options = {}) {
      const endpoint = new URL(url, global.location.href);
      endpoint.searchParams.delete(RESUME_PARAM);
      this.url = endpoint.href;
      this.options = options;
      this.storageKey = options.storageKey || this.url;
      this.positions = parsePositions(load(this.storageKey));
      this.stats = { delivered: 0, duplicates: 0, resets: 0 };
      this._closed = false;
      this._attempt = 0;
      this._open();
    }

    close() {
      this._closed = true;
      clearTimeout(this._timer);
      this.source.close();
    }

    // EventSource resumes by itself (Last-Event-ID) after a drop; the query resumes a new page.
    _open() {
      const source = (this.source = new EventSource(withPositions(this.url, this.positions)));
      source.onopen = () => { this._attempt = 0; };
      source.onmessage = (m) => this._receive(m);
      // EventSource hands a named event only to listeners of that name: options.events.
      for (const name of this.options.events || []) source.addEventListener(name, (m) => this._receive(m));
      source.addEventListener("stream-reset", (m) => this._receive(m));
      source.onerror = () => {
        // CLOSED: the browser gave up (an HTTP error, a wrong content type); retry with backoff.
        if (source.readyState !== EventSource.CLOSED || this._closed) return;
        const delay = Math.min(10000, 500 * 2 ** Math.min(this._attempt++, 32));
        this._timer = setTimeout(() => this._open(), delay * (0.5 + Math.random() / 2));
      };
    }

    _receive(m) {
      const ids = parsePositions(m.lastEventId);
      const moved = Object.keys(ids).filter((c) => !(ids[c] <= this.positions[c]));
      if (!moved.length) return void this.stats.duplicates++; // moves no channel forward
      for (const c of moved) this.positions[c] = ids[c];
      store(this.storageKey, formatPositions(this.positions));
      if (m.type === "stream-reset") {
        let reset = null;
        try {
          reset = JSON.parse(m.data);
        } catch (err) { /* reported below */ }
        if (!reset || typeof reset.channel !== "string") return console.warn("grip-client: bad stream-reset:", m.data);
        this.stats.resets++;
        return call(this.options.onreset, { channel: reset.channel, id: reset.current_id });
      }
      this.stats.delivered++;
      const channel = moved.length === 1 ? moved[0] : null; // several: the first event of a stream
      call(this.options.onevent, {
        channel, id: channel && ids[channel], lastEventId: m.lastEventId, event: m.type, data: m.data,
      });
    }
  }

  global.GripClient = { ReliableSocket, ReliableEventSource, formatPositions, parsePositions };
})(typeof window !== "undefined" ? window : globalThis);

// The browser client of mediasoup-server: joins a room over the protoo
// protocol of the mediasoup demo (PROTOCOL.md), sends the camera and the
// microphone, shows one tile per remote peer, and carries a chat over a
// "chat" data channel.
//
// Flow (as the demo's RoomClient): WebSocket open → getRouterRtpCapabilities
// → load the Device → createWebRtcTransport ×2 (send, receive) → join → produce
// mic, webcam and the chat data producer. The server then asks us to consume
// (newConsumer / newDataConsumer); we answer once the consumer exists, and the
// server resumes it. When the WebSocket drops, protoo-client reconnects with
// the same URL (same peerId: the server replaces the old peer) and we join
// again from scratch; close code 4000 means the server closed us for good.
//
// window.__app exposes the state for tests (web/browser_test.go).

import protooClient from 'protoo-client';
import * as mediasoupClient from 'mediasoup-client';

const $ = (id) => document.getElementById(id);

const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } };
const MAX_MESSAGES = 200;

// ---------------------------------------------------------------- identity

function randomId(n) {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

// Room and peer ids as the server accepts them: printable, no spaces.
const validId = (s) => typeof s === 'string' && /^[^\s\p{C}]{1,128}$/u.test(s);

const store = {
  get(key) {
    try { return localStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try { localStorage.setItem(key, value); } catch { /* private mode */ }
  },
};

const query = new URLSearchParams(location.search);
let roomId = query.get('roomId');
if (!validId(roomId)) {
  roomId = randomId(8);
  query.set('roomId', roomId);
  history.replaceState(null, '', `${location.pathname}?${query}${location.hash}`);
}
const peerId = randomId(12); // per tab: two tabs are two peers
// ?displayName= (as in the demo) sets the name and is then dropped from the
// address bar, so that the link people share carries only the room.
let displayName = (query.get('displayName') || store.get('displayName') || '').trim().slice(0, 40) || `Guest ${randomId(3).toUpperCase()}`;
if (query.has('displayName')) {
  store.set('displayName', displayName);
  query.delete('displayName');
  history.replaceState(null, '', `${location.pathname}?${query}${location.hash}`);
}

function browserInfo() {
  const ua = navigator.userAgent;
  for (const [re, name] of [
    [/Edg\/([\d.]+)/, 'Edge'],
    [/OPR\/([\d.]+)/, 'Opera'],
    [/Firefox\/([\d.]+)/, 'Firefox'],
    [/Chrom(?:e|ium)\/([\d.]+)/, 'Chrome'],
    [/Version\/([\d.]+).*Safari/, 'Safari'],
  ]) {
    const m = ua.match(re);
    if (m) return { flag: name.toLowerCase(), name, version: m[1] };
  }
  return { flag: 'unknown', name: 'Unknown', version: '' };
}

// ---------------------------------------------------------------- state

const state = {
  ws: 'connecting',
  send: 'new',
  recv: 'new',
  joined: false,
  mediasoupVersion: '',
  activeSpeaker: null,
  micOn: true,
  camOn: true,
};
const peers = new Map(); // peerId → { id, displayName, device, tile, consumers: Set }
const messages = []; // { from, name, text, self, at }
const errors = [];
const marks = {}; // performance.now() (ms since navigation) of milestones
let localStream = null;
let session = null; // the current join: device, transports, producers, consumers

const mark = (name) => {
  if (!(name in marks)) marks[name] = Math.round(performance.now());
};

// ---------------------------------------------------------------- UI helpers

function setPill(id, value) {
  const el = $(id);
  el.dataset.state = value;
  el.querySelector('b').textContent = value;
}

function renderStatus() {
  setPill('st-ws', state.ws);
  setPill('st-send', state.send);
  setPill('st-recv', state.recv);
}

let noticeTimer = null;
function notice(text, { error = false, sticky = false, action = null } = {}) {
  const el = $('notice');
  el.replaceChildren(document.createTextNode(text));
  if (action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = action.label;
    b.addEventListener('click', action.run);
    el.append(' ', b);
  }
  el.classList.toggle('error', error);
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (!sticky) noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

// closedByServer tells an SCTP association the server aborted (SCTP cause 12,
// User-Initiated Abort) from a real data channel error. mediasoup 3.26's own
// SCTP stack aborts the association when the server closes the transport (the
// peer left, was replaced by a reconnect, kicked, or the server stopped), and
// the browser reports that as an "error" on each open data channel before it
// closes: for the app it is the channel closing, not a failure.
function closedByServer(err) {
  return Boolean(err && err.errorDetail === 'sctp-failure' && err.sctpCauseCode === 12);
}

function fail(context, err) {
  const sctp = err && err.errorDetail === 'sctp-failure' ? ` [SCTP cause ${err.sctpCauseCode}]` : '';
  const text = `${context}: ${err && err.message ? err.message : err}${sctp}`;
  errors.push(text);
  console.error(text, err);
  notice(text, { error: true });
}

function renderPeerCount() {
  const n = peers.size;
  $('peer-count').textContent = !state.joined
    ? 'Connecting…'
    : n === 0
      ? 'Nobody else here yet: share the link to this room.'
      : `${n} other ${n === 1 ? 'person' : 'people'} in the room`;
}

function renderSpeaker() {
  for (const tile of document.querySelectorAll('.tile')) tile.classList.remove('speaking');
  const id = state.activeSpeaker;
  if (!id) return;
  const tile = id === peerId ? $('tile-me') : peers.get(id)?.tile;
  tile?.classList.add('speaking');
}

function renderChatEnabled() {
  const dp = session?.chatProducer;
  const ready = Boolean(dp && dp.readyState === 'open');
  $('chat-input').disabled = !ready;
  $('chat-send').disabled = !ready;
  $('chat-input').placeholder = ready ? 'Say something…' : 'Chat connects after joining…';
}

function addMessage(msg) {
  messages.push(msg);
  if (messages.length > MAX_MESSAGES) messages.shift();
  const list = $('messages');
  const li = document.createElement('li');
  li.className = msg.self ? 'self' : msg.system ? 'system' : '';
  if (!msg.system) {
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = msg.self ? 'You' : msg.name;
    li.append(who);
  }
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = msg.text;
  li.append(text);
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

const systemMessage = (text) => addMessage({ system: true, text, at: Date.now() });

// Browsers may refuse to play sound before the user touched the page.
let soundBlocked = false;
function playAudio(audio) {
  const p = audio.play();
  if (!p) return;
  p.catch((err) => {
    if (err.name !== 'NotAllowedError' || soundBlocked) return;
    soundBlocked = true;
    notice('Your browser blocked the sound of the others.', {
      sticky: true,
      action: {
        label: 'Enable sound',
        run: () => {
          soundBlocked = false;
          $('notice').hidden = true;
          for (const a of document.querySelectorAll('audio')) if (a.srcObject) a.play().catch(() => {});
        },
      },
    });
  });
}

// ---------------------------------------------------------------- peers & tiles

function addPeer({ id, displayName: name, device }) {
  let p = peers.get(id);
  if (p) {
    p.displayName = name || p.displayName;
    p.tile.querySelector('.who').textContent = p.displayName;
    return p;
  }
  const tile = $('tile-template').content.firstElementChild.cloneNode(true);
  tile.dataset.peerId = id;
  tile.querySelector('.who').textContent = name || id;
  tile.title = device && device.name ? `${name} · ${device.name} ${device.version || ''}`.trim() : name || id;
  tile.classList.add('no-video');
  const video = tile.querySelector('video');
  video.addEventListener('loadeddata', () => mark('firstRemoteFrame'));
  $('tiles').append(tile);
  p = { id, displayName: name || id, device, tile, consumers: new Set() };
  peers.set(id, p);
  renderPeerCount();
  renderSpeaker();
  return p;
}

function removePeer(id) {
  const p = peers.get(id);
  if (!p) return;
  for (const c of p.consumers) c.close();
  p.tile.remove();
  peers.delete(id);
  if (state.activeSpeaker === id) state.activeSpeaker = null;
  renderPeerCount();
}

function renderPeerMedia(p) {
  const live = [...p.consumers].filter((c) => !c.closed);
  const video = live.find((c) => c.kind === 'video');
  const audio = live.find((c) => c.kind === 'audio');
  const vEl = p.tile.querySelector('video');
  const aEl = p.tile.querySelector('audio');
  if (video) {
    if (!vEl.srcObject || vEl.srcObject.getVideoTracks()[0] !== video.track) {
      vEl.srcObject = new MediaStream([video.track]);
      vEl.play().catch(() => {});
    }
  } else if (vEl.srcObject) {
    vEl.srcObject = null;
  }
  if (audio) {
    if (!aEl.srcObject || aEl.srcObject.getAudioTracks()[0] !== audio.track) {
      aEl.srcObject = new MediaStream([audio.track]);
      playAudio(aEl);
    }
  } else if (aEl.srcObject) {
    aEl.srcObject = null;
  }
  const videoPaused = Boolean(video && (video.paused || video.appData.remotelyPaused));
  p.tile.classList.toggle('no-video', !video || videoPaused);
  p.tile.querySelector('.placeholder').textContent = video ? 'Camera paused' : 'No video';
  const muted = !audio || audio.paused || audio.appData.remotelyPaused;
  p.tile.classList.toggle('muted-mic', Boolean(muted));
  const tag = p.tile.querySelector('.paused-tag');
  tag.hidden = !muted;
  tag.textContent = 'muted';
}

function peerOf(consumer) {
  return peers.get(consumer.appData.peerId);
}

// ---------------------------------------------------------------- local media

async function getLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    notice('Camera and microphone need HTTPS (or localhost). You can still watch, listen and chat.', { sticky: true });
    return null;
  }
  const attempts = [
    { audio: true, video: VIDEO_CONSTRAINTS },
    { audio: true, video: false },
    { audio: false, video: VIDEO_CONSTRAINTS },
  ];
  let lastErr = null;
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      lastErr = err;
    }
  }
  notice(`No camera or microphone (${lastErr && lastErr.name}). You can still watch, listen and chat.`, { sticky: true });
  return null;
}

function renderLocal() {
  const v = localStream && localStream.getVideoTracks()[0];
  const video = $('local-video');
  if (v && !video.srcObject) {
    video.srcObject = new MediaStream([v]);
    video.play().catch(() => {});
  }
  $('tile-me').classList.toggle('no-video', !v || !state.camOn);
  $('tile-me').querySelector('.placeholder').textContent = v ? 'Camera off' : 'No camera';
  const a = localStream && localStream.getAudioTracks()[0];
  $('toggle-mic').disabled = !a;
  $('toggle-cam').disabled = !v;
  $('toggle-mic').textContent = state.micOn ? 'Mute mic' : 'Unmute mic';
  $('toggle-cam').textContent = state.camOn ? 'Stop camera' : 'Start camera';
  $('toggle-mic').setAttribute('aria-pressed', String(state.micOn));
  $('toggle-cam').setAttribute('aria-pressed', String(state.camOn));
  $('tile-me').classList.toggle('muted-mic', !a || !state.micOn);
}

async function setProducerPaused(source, paused) {
  const s = session;
  const producer = s && s.producers.get(source);
  if (!producer || producer.closed) return;
  if (paused) producer.pause();
  else producer.resume();
  try {
    await protoo.request(paused ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id });
  } catch (err) {
    fail(`${paused ? 'pause' : 'resume'} ${source}`, err);
  }
}

// ---------------------------------------------------------------- signaling

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/?${new URLSearchParams({ roomId, peerId })}`;
const protoo = new protooClient.Peer(new protooClient.WebSocketTransport(wsUrl));
const localMedia = getLocalMedia().then((stream) => {
  localStream = stream;
  mark('localMedia');
  renderLocal();
  return stream;
});

protoo.on('open', () => {
  state.ws = 'open';
  mark('wsOpen');
  renderStatus();
  joinRoom();
});

protoo.on('failed', (attempt) => {
  state.ws = `retrying (${attempt})`;
  renderStatus();
});

protoo.on('disconnected', () => {
  state.ws = 'reconnecting';
  renderStatus();
  endSession();
  notice('Connection lost: reconnecting…', { error: true, sticky: true });
});

protoo.on('close', () => {
  state.ws = 'closed';
  renderStatus();
  endSession();
  notice('Disconnected from the room.', {
    error: true,
    sticky: true,
    action: { label: 'Rejoin', run: () => location.reload() },
  });
});

protoo.on('request', (request, accept, reject) => {
  const s = session;
  handleRequest(request, accept, reject).catch((err) => {
    // A request of a connection that dropped meanwhile fails for that reason.
    if (s && session === s) fail(request.method, err);
    reject(500, String(err && err.message ? err.message : err));
  });
});

protoo.on('notification', (notification) => {
  try {
    handleNotification(notification);
  } catch (err) {
    fail(notification.method, err);
  }
});

async function newDevice() {
  // Device.factory() detects the browser more precisely (newer clients).
  if (typeof mediasoupClient.Device.factory === 'function') return mediasoupClient.Device.factory();
  return new mediasoupClient.Device();
}

function wireTransport(s, transport, which) {
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    protoo.request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters })
      .then(callback)
      .catch(errback);
  });
  transport.on('connectionstatechange', (connectionState) => {
    if (s !== session) return;
    state[which] = connectionState;
    if (connectionState === 'connected') mark(`${which}Connected`);
    renderStatus();
    if (connectionState === 'failed') restartIce(s, transport);
  });
  if (which !== 'send') return;
  transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
    protoo.request('produce', { transportId: transport.id, kind, rtpParameters, appData })
      .then(({ id }) => callback({ id }))
      .catch(errback);
  });
  transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
    protoo.request('produceData', { transportId: transport.id, sctpStreamParameters, label, protocol, appData })
      .then(({ id }) => callback({ id }))
      .catch(errback);
  });
}

async function restartIce(s, transport) {
  if (s.restarting.has(transport.id)) return;
  s.restarting.add(transport.id);
  try {
    const iceParameters = await protoo.request('restartIce', { transportId: transport.id });
    if (!transport.closed) await transport.restartIce({ iceParameters });
  } catch (err) {
    fail('ICE restart', err);
  } finally {
    setTimeout(() => s.restarting.delete(transport.id), 5000);
  }
}

async function createTransport(s, device, which) {
  const info = await protoo.request('createWebRtcTransport', {
    forceTcp: false,
    producing: which === 'send',
    consuming: which === 'recv',
    // mediasoup-client >= 3.21 has no device.sctpCapabilities; the server
    // enables SCTP without them.
    sctpCapabilities: device.sctpCapabilities,
  });
  const options = {
    id: info.id,
    iceParameters: info.iceParameters,
    iceCandidates: info.iceCandidates,
    dtlsParameters: { ...info.dtlsParameters, role: 'auto' },
    sctpParameters: info.sctpParameters,
    iceServers: [],
  };
  const transport = which === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
  wireTransport(s, transport, which);
  return transport;
}

// joinRoom starts a new session on the (re)opened WebSocket.
function joinRoom() {
  endSession();
  const s = {
    device: null,
    sendTransport: null,
    recvTransport: null,
    producers: new Map(), // 'mic' | 'webcam' → Producer
    consumers: new Map(), // id → Consumer
    dataConsumers: new Map(), // id → DataConsumer
    chatProducer: null,
    restarting: new Set(),
  };
  session = s;
  // Errors of a session that a reconnect replaced are expected: drop them.
  join(s).catch((err) => {
    if (session === s) fail('Could not join the room', err);
  });
}

async function join(s) {
  const alive = () => session === s;
  const device = await newDevice();
  s.device = device;
  const routerRtpCapabilities = await protoo.request('getRouterRtpCapabilities');
  await device.load({ routerRtpCapabilities });
  if (!alive()) return;

  // Both transports before join, as the demo: the server consumes the others
  // into our receive transport right after answering join.
  s.sendTransport = await createTransport(s, device, 'send');
  s.recvTransport = await createTransport(s, device, 'recv');
  if (!alive()) return;

  const { peers: others } = await protoo.request('join', {
    displayName,
    device: browserInfo(),
    rtpCapabilities: device.recvRtpCapabilities || device.rtpCapabilities,
    sctpCapabilities: device.sctpCapabilities,
  });
  if (!alive()) return;
  state.joined = true;
  mark('joined');
  for (const p of others) addPeer(p);
  renderPeerCount();
  systemMessage(others.length ? `You joined ${others.length === 1 ? 'one other' : `${others.length} others`}.` : 'You joined the room.');

  // The chat first: it does not wait for the camera permission.
  try {
    const dp = await s.sendTransport.produceData({ ordered: true, label: 'chat', priority: 'medium', appData: { info: 'chat' } });
    if (!alive()) {
      dp.close();
      return;
    }
    s.chatProducer = dp;
    const update = () => { if (alive()) renderChatEnabled(); };
    dp.on('open', update);
    dp.on('close', update);
    dp.on('transportclose', update);
    dp.on('error', (err) => { if (alive() && !closedByServer(err)) fail('chat', err); });
    update();
  } catch (err) {
    if (alive()) fail('Chat unavailable', err);
  }

  const stream = await localMedia;
  if (!alive() || !stream) return;
  const mic = stream.getAudioTracks()[0];
  const cam = stream.getVideoTracks()[0];
  if (mic && device.canProduce('audio')) {
    try {
      const producer = await s.sendTransport.produce({ track: mic, stopTracks: false, appData: { source: 'mic' } });
      s.producers.set('mic', producer);
      if (!state.micOn) await setProducerPaused('mic', true);
    } catch (err) {
      if (alive()) fail('Could not send the microphone', err);
    }
  }
  if (cam && device.canProduce('video') && alive()) {
    try {
      const producer = await s.sendTransport.produce({
        track: cam,
        stopTracks: false,
        codecOptions: { videoGoogleStartBitrate: 1000 },
        appData: { source: 'webcam' },
      });
      s.producers.set('webcam', producer);
      if (!state.camOn) await setProducerPaused('webcam', true);
    } catch (err) {
      if (alive()) fail('Could not send the camera', err);
    }
  }
}

// endSession drops everything of the current join: transports (and with them
// producers, consumers and data channels) and the remote peers' tiles.
function endSession() {
  const s = session;
  session = null;
  state.joined = false;
  state.send = 'new';
  state.recv = 'new';
  state.activeSpeaker = null;
  if (s) {
    s.sendTransport?.close();
    s.recvTransport?.close();
  }
  for (const id of [...peers.keys()]) removePeer(id);
  renderStatus();
  renderPeerCount();
  renderChatEnabled();
  renderSpeaker();
}

async function handleRequest(request, accept, reject) {
  const s = session;
  switch (request.method) {
    case 'newConsumer': {
      if (!s || !s.recvTransport) {
        reject(409, 'not ready to consume');
        return;
      }
      const { peerId: from, producerId, id, kind, rtpParameters, appData = {}, producerPaused } = request.data;
      const consumer = await s.recvTransport.consume({
        id,
        producerId,
        kind,
        rtpParameters,
        // One stream per remote peer for mic + webcam, so the browser syncs them.
        streamId: `${from}-${appData.share ? 'share' : 'mic-webcam'}`,
        appData: { ...appData, peerId: from, remotelyPaused: Boolean(producerPaused) },
      });
      if (session !== s) {
        consumer.close();
        reject(409, 'left the room');
        return;
      }
      s.consumers.set(consumer.id, consumer);
      const p = addPeer(peers.get(from) || { id: from, displayName: from });
      p.consumers.add(consumer);
      consumer.observer.on('close', () => {
        s.consumers.delete(consumer.id);
        p.consumers.delete(consumer);
        if (peers.get(from) === p) renderPeerMedia(p);
      });
      renderPeerMedia(p);
      // The server resumes the consumer once we accept.
      accept();
      return;
    }
    case 'newDataConsumer': {
      if (!s || !s.recvTransport) {
        reject(409, 'not ready to consume data');
        return;
      }
      const { peerId: from, dataProducerId, id, sctpStreamParameters, label, protocol, appData = {} } = request.data;
      const dc = await s.recvTransport.consumeData({
        id,
        dataProducerId,
        sctpStreamParameters,
        label,
        protocol,
        appData: { ...appData, peerId: from },
      });
      if (session !== s) {
        dc.close();
        reject(409, 'left the room');
        return;
      }
      s.dataConsumers.set(dc.id, dc);
      dc.observer.on('close', () => s.dataConsumers.delete(dc.id));
      dc.on('error', (err) => { if (session === s && !closedByServer(err)) fail('data channel', err); });
      dc.on('message', (data) => {
        if (dc.label !== 'chat') return;
        const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
        const sender = peers.get(from);
        addMessage({ from, name: sender ? sender.displayName : from, text, self: false, at: Date.now() });
      });
      accept();
      return;
    }
    default:
      reject(405, `unknown method ${request.method}`);
  }
}

function handleNotification({ method, data = {} }) {
  const s = session;
  switch (method) {
    case 'mediasoup-version':
      state.mediasoupVersion = data.version;
      document.querySelector('.brand').title = `mediasoup ${data.version}`;
      return;
    case 'newPeer':
      if (!s) return;
      addPeer(data);
      systemMessage(`${data.displayName || data.id} joined.`);
      return;
    case 'peerClosed': {
      const p = peers.get(data.peerId);
      if (p) systemMessage(`${p.displayName} left.`);
      removePeer(data.peerId);
      return;
    }
    case 'peerDisplayNameChanged': {
      const p = peers.get(data.peerId);
      if (!p) return;
      p.displayName = data.displayName;
      p.tile.querySelector('.who').textContent = data.displayName;
      systemMessage(`${data.oldDisplayName} is now ${data.displayName}.`);
      return;
    }
    case 'consumerClosed': {
      const c = s && s.consumers.get(data.consumerId);
      if (c) c.close();
      return;
    }
    case 'consumerPaused':
    case 'consumerResumed': {
      const c = s && s.consumers.get(data.consumerId);
      if (!c) return;
      const paused = method === 'consumerPaused';
      c.appData.remotelyPaused = paused;
      if (paused) c.pause();
      else c.resume();
      const p = peerOf(c);
      if (p) renderPeerMedia(p);
      return;
    }
    case 'dataConsumerClosed': {
      const dc = s && s.dataConsumers.get(data.dataConsumerId);
      if (dc) dc.close();
      return;
    }
    case 'activeSpeaker':
      state.activeSpeaker = data.peerId || null;
      renderSpeaker();
      return;
    case 'producerScore':
    case 'consumerScore':
    case 'consumerLayersChanged':
    case 'downlinkBwe':
      return;
    default:
      console.debug('unhandled notification', method, data);
  }
}

// ---------------------------------------------------------------- controls

function sendChat(raw) {
  const text = String(raw ?? '').trim();
  if (!text) return false;
  const dp = session && session.chatProducer;
  if (!dp || dp.readyState !== 'open') throw new Error('chat is not connected');
  dp.send(text);
  addMessage({ from: peerId, name: displayName, text, self: true, at: Date.now() });
  return true;
}

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('chat-input');
  try {
    if (sendChat(input.value)) input.value = '';
  } catch (err) {
    fail('chat', err);
  }
});

async function changeDisplayName(name) {
  name = String(name ?? '').trim().slice(0, 40);
  if (!name || name === displayName) {
    $('display-name').value = displayName;
    return;
  }
  displayName = name;
  store.set('displayName', name);
  $('me-name').textContent = name;
  $('display-name').value = name;
  if (state.joined) {
    try {
      await protoo.request('changeDisplayName', { displayName: name });
    } catch (err) {
      fail('Could not change your name', err);
    }
  }
}

$('display-name').value = displayName;
$('me-name').textContent = displayName;
$('display-name').addEventListener('change', (e) => changeDisplayName(e.target.value));
$('display-name').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') e.target.blur();
});

$('room-id').textContent = roomId;
$('copy-link').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(location.href);
    notice('Link copied: send it to the people you want in this room.');
  } catch {
    window.prompt('Copy this link:', location.href);
  }
});

$('toggle-mic').addEventListener('click', () => {
  state.micOn = !state.micOn;
  renderLocal();
  setProducerPaused('mic', !state.micOn);
});

$('toggle-cam').addEventListener('click', () => {
  state.camOn = !state.camOn;
  renderLocal();
  setProducerPaused('webcam', !state.camOn);
});

window.addEventListener('pagehide', () => protoo.close());

renderStatus();
renderPeerCount();
renderChatEnabled();

// ---------------------------------------------------------------- test hooks

async function stats() {
  const s = session;
  const consumers = [];
  for (const c of s ? s.consumers.values() : []) {
    const entry = {
      id: c.id,
      peerId: c.appData.peerId,
      kind: c.kind,
      paused: c.paused,
      framesDecoded: 0,
      packetsReceived: 0,
      bytesReceived: 0,
    };
    try {
      const report = await c.getStats();
      report.forEach((r) => {
        if (r.type !== 'inbound-rtp') return;
        entry.framesDecoded += r.framesDecoded || 0;
        entry.packetsReceived += r.packetsReceived || 0;
        entry.bytesReceived += r.bytesReceived || 0;
      });
    } catch (err) {
      entry.error = String(err);
    }
    consumers.push(entry);
  }
  return {
    roomId,
    peerId,
    displayName,
    mediasoupVersion: state.mediasoupVersion,
    ws: state.ws,
    sendTransport: state.send,
    recvTransport: state.recv,
    joined: state.joined,
    activeSpeaker: state.activeSpeaker,
    peers: [...peers.values()].map((p) => ({ id: p.id, displayName: p.displayName })),
    producers: s ? [...s.producers.entries()].map(([source, p]) => ({ source, id: p.id, kind: p.kind, paused: p.paused })) : [],
    chatProducer: s && s.chatProducer ? s.chatProducer.readyState : 'none',
    dataConsumers: s
      ? [...s.dataConsumers.values()].map((d) => ({ id: d.id, peerId: d.appData.peerId, label: d.label, readyState: d.readyState }))
      : [],
    consumers,
    chat: messages.filter((m) => !m.system).map(({ from, name, text, self }) => ({ from, name, text, self })),
    marks: { ...marks },
    errors: [...errors],
  };
}

// dropConnection closes the WebSocket as a network drop would (not with 4000):
// protoo-client reconnects and the page joins again.
function dropConnection() {
  const ws = protoo._transport && protoo._transport._ws;
  if (!ws) throw new Error('no WebSocket to drop');
  ws.close();
}

window.__app = { roomId, peerId, stats, send: sendChat, setDisplayName: changeDisplayName, dropConnection, marks };

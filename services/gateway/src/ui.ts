// A minimal web chat page served at `/`. The token is typed by the user and kept
// in sessionStorage for this tab only; it is sent in the Authorization header of
// same-origin requests and never placed in a URL.
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Talon</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 760px; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
  h1 { font-size: 1.4rem; } #log { border: 1px solid #ddd; border-radius: 8px; padding: 1rem; min-height: 240px; white-space: pre-wrap; }
  .user { color: #0b57d0; } .assistant { color: #1d1d1f; } .error { color: #b3261e; }
  form { display: flex; gap: .5rem; margin-top: 1rem; } input[type=text], input[type=password] { flex: 1; padding: .5rem; }
</style>
</head>
<body>
<h1>Talon</h1>
<p>Paste an API token (<code>talon token create --name you</code>). It stays in this tab only.</p>
<form id="auth"><input id="token" type="password" autocomplete="off" placeholder="talon_pat_..."><button>Use token</button></form>
<div id="log" aria-live="polite"></div>
<form id="send"><input id="msg" type="text" autocomplete="off" placeholder="Message"><button>Send</button></form>
<script>
(() => {
  const log = document.getElementById('log');
  const add = (cls, text) => { const d = document.createElement('div'); d.className = cls; d.textContent = text; log.appendChild(d); return d; };
  document.getElementById('auth').addEventListener('submit', (e) => { e.preventDefault(); sessionStorage.setItem('talon-token', document.getElementById('token').value.trim()); document.getElementById('token').value = ''; add('assistant', 'Token set for this tab.'); });
  document.getElementById('send').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = document.getElementById('msg'); const text = input.value.trim(); if (!text) return; input.value = '';
    add('user', 'you: ' + text);
    const out = add('assistant', 'talon: ');
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + (sessionStorage.getItem('talon-token') || '') }, body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: text }], metadata: { conversation_id: 'web' } }) });
    if (!res.ok) { const j = await res.json().catch(() => ({})); out.className = 'error'; out.textContent = 'error: ' + ((j.error && j.error.message) || res.status); return; }
    const reader = res.body.getReader(); const dec = new TextDecoder(); let buf = '';
    for (;;) { const { value, done } = await reader.read(); if (done) break; buf += dec.decode(value, { stream: true });
      let i; while ((i = buf.indexOf('\\n\\n')) >= 0) { const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = ev.replace(/^data: /, ''); if (data === '[DONE]') continue; try { const j = JSON.parse(data); if (j.error) { out.className = 'error'; out.textContent += ' [' + j.error.message + ']'; } else { out.textContent += (j.choices[0].delta.content || ''); } } catch {} } }
  });
})();
</script>
</body>
</html>
`;

// Web chat client: same-origin fetch with the token from sessionStorage (never in a URL).
(() => {
  const log = document.getElementById('log');
  const add = (cls, text) => {
    const d = document.createElement('div');
    d.className = cls;
    d.textContent = text;
    log.appendChild(d);
    return d;
  };
  document.getElementById('auth').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem('talon-token', document.getElementById('token').value.trim());
    document.getElementById('token').value = '';
    add('assistant', 'Token set for this tab.');
  });
  document.getElementById('send').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = document.getElementById('msg');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    add('user', 'you: ' + text);
    const out = add('assistant', 'talon: ');
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + (sessionStorage.getItem('talon-token') || '') },
      body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: text }], metadata: { conversation_id: 'web' } }),
    });
    if (!res.ok) {
      const j = await res.json().catch(() => ({}));
      out.className = 'error';
      out.textContent = 'error: ' + ((j.error && j.error.message) || res.status);
      return;
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = ev.replace(/^data: /, '');
        if (data === '[DONE]') continue;
        try {
          const j = JSON.parse(data);
          if (j.error) {
            out.className = 'error';
            out.textContent += ' [' + j.error.message + ']';
          } else {
            out.textContent += j.choices[0].delta.content || '';
          }
        } catch {
          // A partial or non-JSON event: ignore it, the next one follows.
        }
      }
    }
  });
})();

// The passkey pages' only script: asks the server for WebAuthn options, lets the browser's
// passkey answer them, and sends the answer back. No framework; base64url both ways.
"use strict";
const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const enc = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function post(path, body) {
  const response = await fetch(location.pathname + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? "{}" : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok && answer.ok === undefined) throw new Error(answer.message || response.statusText);
  return answer;
}

function credentialJSON(credential) {
  const r = credential.response;
  const response = { clientDataJSON: enc(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = enc(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = enc(r.authenticatorData);
    response.signature = enc(r.signature);
    if (r.userHandle) response.userHandle = enc(r.userHandle);
  }
  return { id: credential.id, rawId: enc(credential.rawId), type: credential.type, response };
}

async function getAssertion(options) {
  options.challenge = dec(options.challenge);
  (options.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
  return navigator.credentials.get({ publicKey: options });
}

async function ceremony(kind) {
  let options = await post("/options");
  if (options.ok === false) return options;
  if (options.mode === "step-up") {
    // Adding a passkey to someone who has one: one of theirs proves it is them first.
    const proof = await post("/verify", credentialJSON(await getAssertion(options)));
    if (!proof.ok) return proof;
    options = await post("/options");
    if (options.ok === false) return options;
  }
  let credential;
  if (kind === "create") {
    options.challenge = dec(options.challenge);
    options.user.id = dec(options.user.id);
    (options.excludeCredentials || []).forEach((c) => { c.id = dec(c.id); });
    credential = await navigator.credentials.create({ publicKey: options });
  } else {
    credential = await getAssertion(options);
  }
  return post("/verify", credentialJSON(credential));
}

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("go");
  const status = document.getElementById("status");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.className = "";
    status.textContent = "Waiting for your passkey…";
    try {
      const result = await ceremony(button.dataset.kind);
      status.textContent = result.message;
      status.className = result.ok ? "ok" : "refused";
      if (!result.ok && result.retry) button.disabled = false;
    } catch (error) {
      // The person cancelled, or no passkey of theirs answered: nothing was sent.
      status.textContent = "No passkey was used (" + error.message + "). You can try again.";
      status.className = "refused";
      button.disabled = false;
    }
  });
});

// Secret masking (src/runtime/log.ts): every form a server or proxy could plausibly echo back is masked, and no output
// keeps enough of an encoded secret to decode it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redact, registerSecret } from '../src/runtime/log.ts';

const TOKEN = 'glpat-Mask/Me+Please=0123456789';
registerSecret(TOKEN);
const bytes = Buffer.from(TOKEN);

/** Asserts that no 12-character window of any encoding of the secret survives in `out`. */
function assertMasked(label: string, out: string): void {
  assert.match(out, /\[MASKED\]/, `${label}: nothing masked in ${out}`);
  for (const form of [TOKEN, bytes.toString('base64').replace(/=+$/, ''), bytes.toString('hex')]) {
    for (let i = 0; i + 12 <= form.length; i += 4) assert.ok(!out.includes(form.slice(i, i + 12)), `${label}: ${out}`);
  }
}

describe('secret masking', () => {
  const forms: [string, string][] = [
    ['raw', TOKEN],
    ['URL-encoded', encodeURIComponent(TOKEN)],
    ['URL-encoded, lower-case hex', encodeURIComponent(TOKEN).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())],
    ['base64', bytes.toString('base64')],
    ['base64 without padding', bytes.toString('base64').replace(/=+$/, '')],
    ['base64url', bytes.toString('base64url')],
    ['base64url with padding', `${bytes.toString('base64url')}==`],
    ['hex', bytes.toString('hex')],
    ['HEX', bytes.toString('hex').toUpperCase()],
    ['JSON string', JSON.stringify({ token: TOKEN })],
    ['JSON with escaped slashes', JSON.stringify({ token: TOKEN }).replace(/\//g, '\\/')],
  ];
  for (const user of ['gitlab-ci-token', 'a', 'ab', 'abc', 'oauth2']) {
    forms.push([`Basic ${user}:token`, `Authorization: Basic ${Buffer.from(`${user}:${TOKEN}`).toString('base64')}`]);
  }
  for (const [label, text] of forms) {
    it(`masks the ${label} form`, () => {
      const out = redact(`the server said: ${text} (end)`);
      assertMasked(label, out);
      assert.ok(out.startsWith('the server said: ') && out.endsWith(' (end)'), out);
    });
  }

  it('leaves unrelated text alone', () => {
    assert.equal(redact('glpat-other token 0123 base64 Z2xwYXQ='), 'glpat-other token 0123 base64 Z2xwYXQ=');
  });
});

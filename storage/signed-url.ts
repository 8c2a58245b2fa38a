import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PresignedUrlError } from './errors.js';

/**
 * Presigned URLs for the local backend, which point at the service itself: the query carries
 * `expires` (Unix seconds) and `signature`, an HMAC-SHA256 over the method, the key and the
 * expiry. Any API host holding the same secret accepts the URL; nothing is stored per URL.
 */
export interface SignedParams {
  readonly expires: string;
  readonly signature: string;
}

export interface UrlSigner {
  /** Where the secret came from, for /health and the logs (never the secret). */
  readonly source: SecretSource;
  sign(method: string, key: string, expiresAt: Date): SignedParams;
  /** `url` with `expires` and `signature` added to its query. */
  signUrl(url: string, method: string, key: string, expiresAt: Date): string;
  /** Throws PresignedUrlError('invalid' | 'expired') unless `params` were signed here for this method and key and are still valid. */
  verify(method: string, key: string, params: Partial<SignedParams> | URLSearchParams, now?: Date): void;
}

export type SecretSource = 'UPLOAD_SIGNING_KEY' | 'API_KEY' | 'generated';

const CONTEXT = 'hr-presigned-put-v1';

function stringToSign(method: string, key: string, expires: string): string {
  return `${CONTEXT}\n${method.toUpperCase()}\n${key}\n${expires}`;
}

export function createUrlSigner(secret: Buffer, source: SecretSource): UrlSigner {
  if (secret.length < 32) throw new Error('the URL signing secret must be at least 32 bytes');
  const mac = (text: string) => createHmac('sha256', secret).update(text).digest();
  const sign = (method: string, key: string, expiresAt: Date): SignedParams => {
    const expires = String(Math.floor(expiresAt.getTime() / 1000));
    return { expires, signature: mac(stringToSign(method, key, expires)).toString('base64url') };
  };
  return {
    source,
    sign,
    signUrl(url, method, key, expiresAt) {
      const u = new URL(url);
      const p = sign(method, key, expiresAt);
      u.searchParams.set('expires', p.expires);
      u.searchParams.set('signature', p.signature);
      return u.toString();
    },
    verify(method, key, params, now = new Date()) {
      const get = (name: keyof SignedParams) =>
        params instanceof URLSearchParams ? (params.get(name) ?? undefined) : params[name];
      const expires = get('expires');
      const signature = get('signature');
      if (!expires || !signature || !/^\d{1,12}$/.test(expires)) throw new PresignedUrlError('invalid');
      const given = Buffer.from(signature, 'base64url');
      const wanted = mac(stringToSign(method, key, expires));
      // The signature first: a tampered expiry is "invalid", not "expired".
      if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) throw new PresignedUrlError('invalid');
      if (Number(expires) * 1000 <= now.getTime()) throw new PresignedUrlError('expired');
    },
  };
}

let generated: Buffer | undefined;

/**
 * The secret behind local presigned URLs: UPLOAD_SIGNING_KEY when set; else derived from API_KEY
 * (so every API host sharing the key accepts every host's URLs, and the URL reveals nothing of
 * the key); else random, made once per process, so a URL only works on the host that made it.
 */
export function signingSecret(settings: { uploadSigningKey?: string; apiKey?: string }): { secret: Buffer; source: SecretSource } {
  const derive = (material: string) => createHmac('sha256', material).update(CONTEXT).digest();
  if (settings.uploadSigningKey) return { secret: derive(settings.uploadSigningKey), source: 'UPLOAD_SIGNING_KEY' };
  if (settings.apiKey) return { secret: derive(settings.apiKey), source: 'API_KEY' };
  generated ??= randomBytes(32);
  return { secret: generated, source: 'generated' };
}

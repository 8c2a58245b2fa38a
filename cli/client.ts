/** The CLI's only way to the service: HTTP, with errors turned into exit codes. */

export const EXIT = {
  ok: 0,
  /** The service refused or the work failed: 4xx answers, failed loads, refused restores. */
  failed: 1,
  usage: 2,
  /** The service could not be reached or answered 5xx. */
  unavailable: 3,
  /** `--strict`: the work succeeded but some rows were rejected. */
  rejects: 4,
} as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export interface ClientOptions {
  url: string;
  apiKey?: string | undefined;
}

export class Client {
  constructor(private readonly opts: ClientOptions) {}

  async request(method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.opts.url), {
        method,
        headers,
        body: init.body ?? null,
        // Needed by Node's fetch for streamed request bodies.
        ...(init.body instanceof ReadableStream ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(
        `cannot reach the service at ${this.opts.url} (${cause?.code ?? cause?.message ?? (err as Error).message}); is it running? Set --url or HR_URL.`,
        EXIT.unavailable,
      );
    }
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        const body = (await res.json()) as { error?: { message?: string } };
        if (body.error?.message) message = `${res.status}: ${body.error.message}`;
      } catch {
        // not JSON: keep the status line
      }
      throw new CliError(message, res.status >= 500 ? EXIT.unavailable : EXIT.failed);
    }
    return res;
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(
      method,
      path,
      body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } },
    );
    return (await res.json()) as T;
  }
}

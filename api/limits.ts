import { TooManyRequestsError } from '../core/errors.js';

/**
 * A bound on one kind of heavy work in this process: past `max` at once, the request is refused
 * with 429 and `Retry-After` rather than queued (it would hold a connection and memory meanwhile).
 */
export class Gate {
  private running = 0;

  constructor(
    private readonly what: string,
    private readonly max: number,
    private readonly setting: string,
    private readonly retryAfterSeconds: number,
  ) {}

  /** Takes a place or throws 429; call the returned function once done (twice is harmless). */
  enter(): () => void {
    if (this.running >= this.max) {
      throw new TooManyRequestsError(
        `${this.max} ${this.what} already running in this process (${this.setting}); try again in ${this.retryAfterSeconds} s`,
        this.retryAfterSeconds,
        { limit: this.max, setting: this.setting },
      );
    }
    this.running++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = this.enter();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * Which drivers this build has, by backend name (Lima's pkg/registry). `spec.backend` picks
 * one; a backend corral knows but this build or host cannot run is refused with kind
 * `unsupported` before anything is created.
 */
import { CorralError } from "../errors.js";
import type { Backend } from "../spec/schema.js";
import type { Driver } from "./driver.js";

export type DriverFactory = () => Driver;

export class DriverRegistry {
  private readonly factories = new Map<Backend, DriverFactory>();
  private readonly instances = new Map<Backend, Driver>();

  register(name: Backend, factory: DriverFactory): this {
    this.factories.set(name, factory);
    this.instances.delete(name);
    return this;
  }

  has(name: Backend): boolean {
    return this.factories.has(name);
  }

  names(): Backend[] {
    return [...this.factories.keys()];
  }

  /** One driver instance per backend (drivers cache things such as their VMM's version). */
  get(name: Backend): Driver {
    const existing = this.instances.get(name);
    if (existing !== undefined) return existing;
    const factory = this.factories.get(name);
    if (factory === undefined) {
      throw new CorralError("UNSUPPORTED", `backend: ${name} is not available in this build`, {
        hint: `use one of: ${this.names().join(", ")} (see docs/capabilities.md)`,
        field: "backend",
      });
    }
    const driver = factory();
    this.instances.set(name, driver);
    return driver;
  }

  all(): Driver[] {
    return this.names().map((name) => this.get(name));
  }
}

/** vsock ports of corral's guest agent (same on every backend). */
export const AGENT_VSOCK_PORT = 1024;
/** The agent connects to this host port once it listens (guest-initiated readiness notice). */
export const AGENT_READY_PORT = 1025;

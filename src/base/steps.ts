/**
 * A sequence of named steps, each able to return its own undo (firecracker-go-sdk's handler
 * list). When a step fails, the undos of the steps that ran are called in reverse order, so a
 * failure at any point leaves nothing behind; an undo that fails does not stop the others.
 */
export type Undo = () => void | Promise<void>;

export interface Step {
  name: string;
  // biome-ignore lint/suspicious/noConfusingVoidType: a step returns an undo or nothing
  run(): Promise<Undo | void> | Undo | void;
}

/**
 * Runs `steps` in order. On failure, undoes what ran and rethrows the step's own error (the
 * failed step's name is passed to `onFailure` first, e.g. for logs).
 */
export async function runSteps(
  steps: readonly Step[],
  onFailure?: (step: string, undoErrors: readonly { step: string; error: unknown }[]) => void,
): Promise<void> {
  const done: { step: string; undo: Undo }[] = [];
  for (const step of steps) {
    try {
      const undo = await step.run();
      if (typeof undo === "function") done.push({ step: step.name, undo });
    } catch (err) {
      const undoErrors: { step: string; error: unknown }[] = [];
      for (const { step: name, undo } of done.reverse()) {
        try {
          await undo();
        } catch (error) {
          undoErrors.push({ step: name, error });
        }
      }
      onFailure?.(step.name, undoErrors);
      throw err;
    }
  }
}

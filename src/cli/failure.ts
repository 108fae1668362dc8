import { Code, ConnectError } from "@connectrpc/connect";
import { REASONS, Rejection } from "../domain/rejection.js";

/**
 * How a `holdfast` command ends when it cannot do what was asked. A
 * UsageError (the command as typed cannot work) exits 2 with a pointer to
 * the usage; a CommandFailed (the server or database refused what was
 * asked in the state things are in, or could not be reached, or failed)
 * exits 1. Neither prints a stack trace: the message is the whole story.
 */
export class UsageError extends Error {}

export class CommandFailed extends Error {}

/**
 * The one rule for a refusal of the API's: bad input, like a bad flag, when
 * its code is InvalidArgument (VALIDATION_ERROR, INVALID_SLOT_ID,
 * IDEMPOTENCY_KEY_REUSED...), whether the server found it (a ConnectError)
 * or the command ran the API's checks itself (a Rejection, in operator
 * commands). Such a command fails the same way however often it is run, so
 * a script is told to fix it (2), not that the server said no today (1).
 */
export function badInput(err: unknown): boolean {
  if (err instanceof ConnectError) return err.code === Code.InvalidArgument;
  return err instanceof Rejection && REASONS[err.reason] === "invalid_argument";
}

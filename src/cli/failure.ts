/**
 * How a `holdfast` command ends when it cannot do what was asked. A
 * UsageError (bad or missing arguments or settings) exits 2 with a pointer
 * to the usage; a CommandFailed (the server or database said no) exits 1.
 * Neither prints a stack trace: the message is the whole story.
 */
export class UsageError extends Error {}

export class CommandFailed extends Error {}

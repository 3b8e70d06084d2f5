// The agentpg command-line tool. Everything lives in CliApp, which the tests run in-process.

using AgentPg.Cli;

var interrupts = new CliInterrupts();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl+C cancels what is in progress (a chat run, a watch, a migration); the process exits through the
    // command's own cancellation path. A second Ctrl+C while that is unwinding lets the runtime end the process.
    e.Cancel = interrupts.Press();
};
return await CliApp.RunAsync(args, Console.Out, Console.Error, Console.In, interrupts, CancellationToken.None).ConfigureAwait(false);

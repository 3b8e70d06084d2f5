using AgentPg.Internal;
using Microsoft.Extensions.Options;

namespace AgentPg.Hosting;

/// <summary>Validates <see cref="AgentPgOptions"/> in the container with the messages of <see cref="AgentPgClient.Create"/>.</summary>
internal sealed class AgentPgOptionsValidation : IValidateOptions<AgentPgOptions>
{
    public ValidateOptionsResult Validate(string? name, AgentPgOptions options)
    {
        if (name is not null && name != Options.DefaultName)
        {
            return ValidateOptionsResult.Skip;
        }

        var errors = AgentPgOptionsValidator.Validate(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Metadata;

namespace AgentPg.AspNetCore.Admin;

/// <summary>Runs before every admin endpoint: security headers, deny-by-default, read-only and antiforgery for actions, and
/// the mapping of <see cref="AdminHttpException"/> and AgentPg's not-found errors to status pages.</summary>
internal sealed class AdminGate(AgentPgAdminOptions options) : IEndpointFilter
{
    // Everything the pages use comes from this origin; scripts and styles only from the embedded files (no inline code).
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; " +
        "frame-ancestors 'none'; base-uri 'none'";

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var headers = http.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers.CacheControl = "no-store";

        if (!options.AllowAnonymous && !IsProtected(http.GetEndpoint()))
        {
            return AdminPages.Status(StatusCodes.Status403Forbidden, "Access to the AgentPg admin UI is not configured",
                Html.Trusted("""
                    <p>The admin UI refuses every request until you say who may see it. Protect its endpoints with an authorization
                    policy:</p>
                    <pre>app.MapAgentPgAdmin("/agentpg").RequireAuthorization("AgentPgAdmins");</pre>
                    <p>or, for a UI only reachable from your own machine, allow anonymous access explicitly:</p>
                    <pre>app.MapAgentPgAdmin("/agentpg", o =&gt; o.AllowAnonymous = true);</pre>
                    """));
        }

        if (HttpMethods.IsPost(http.Request.Method))
        {
            if (options.ReadOnly)
            {
                return AdminPages.Status(StatusCodes.Status403Forbidden, "Read-only", Html.Text("This admin UI is read-only: actions are disabled."));
            }

            var antiforgery = http.RequestServices.GetRequiredService<IAntiforgery>();
            bool valid;
            try
            {
                valid = await antiforgery.IsRequestValidAsync(http).ConfigureAwait(false);
            }
            catch (Exception e) when (e is AntiforgeryValidationException or InvalidDataException or BadHttpRequestException)
            {
                // A form beyond the server's limits (FormOptions, Kestrel's body size) or not well formed: the request's fault.
                return AdminPages.Status(e is BadHttpRequestException bad ? bad.StatusCode : StatusCodes.Status400BadRequest, "Bad request",
                    Html.Text($"The form could not be read: {(e.InnerException ?? e).Message}"));
            }

            if (!valid)
            {
                return AdminPages.Status(StatusCodes.Status400BadRequest, "Bad request",
                    Html.Text("The form's antiforgery token is missing or invalid: reload the page and try again."));
            }
        }

        try
        {
            return await next(context).ConfigureAwait(false);
        }
        catch (AdminHttpException e)
        {
            return AdminPages.Status(e.StatusCode, e.StatusCode == StatusCodes.Status404NotFound ? "Not found" : "Error", Html.Text(e.Message));
        }
        catch (AgentPgException e) when (e.Code is AgentPgErrorCode.RunNotFound or AgentPgErrorCode.SessionNotFound
                                             or AgentPgErrorCode.AgentNotFound or AgentPgErrorCode.CompactionNotFound
                                             or AgentPgErrorCode.ToolExecutionNotFound or AgentPgErrorCode.IterationNotFound)
        {
            return AdminPages.Status(StatusCodes.Status404NotFound, "Not found", Html.Text(e.Message));
        }
    }

    // Protected when an authorization requirement is attached (RequireAuthorization, [Authorize], a policy object) and
    // AllowAnonymous metadata does not lift it.
    private static bool IsProtected(Endpoint? endpoint)
    {
        if (endpoint is null || endpoint.Metadata.GetMetadata<IAllowAnonymous>() is not null)
        {
            return false;
        }

        return endpoint.Metadata.GetOrderedMetadata<IAuthorizeData>().Count > 0
            || endpoint.Metadata.GetMetadata<AuthorizationPolicy>() is not null
            || endpoint.Metadata.GetOrderedMetadata<IAuthorizationRequirementData>().Count > 0;
    }
}

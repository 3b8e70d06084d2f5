namespace AgentPg.AspNetCore.Admin;

/// <summary>Ends a request with a status page (400 bad id, 404 not found or another tenant's, 403 read-only).</summary>
internal sealed class AdminHttpException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;

    public static AdminHttpException NotFound(string what) => new(StatusCodes.Status404NotFound, $"No {what} with this id.");
}

"""Azure ML Studio (classic)'s wire format as Microsoft published it: the reference the classic tests
compare our answers with (test_classic_reference.py), recorded here so that what "classic" means is not
our own idea of it. Each fixture names its source; all were read on 2026-12-04 from the stored copies of
the MicrosoftDocs/azure-docs repository (the files behind learn.microsoft.com's "previous versions" pages
of ML Studio (classic)) and of the service's generated API help page.

Kept as published, except where noted (a typo that made a sample invalid JSON).
"""

from __future__ import annotations

from typing import Any

READ_ON = "2026-12-04"

SOURCES = {
    "consume-2016": (
        "How to consume an Azure Machine Learning web service that has been deployed from a Machine "
        "Learning experiment (ms.date 02/20/2016), sections 'RRS Example' and 'BES Example': "
        "https://github.com/MicrosoftDocs/azure-docs/blob/03359f52f87d46a98695ac5231f286a427dda309/"
        "articles/machine-learning/machine-learning-consume-web-services.md"
    ),
    "consume-2020": (
        "ML Studio (classic): How to consume a Machine Learning Studio (classic) web service (ms.date "
        "05/29/2020), the C#, Python, R and JavaScript samples the portal generated: "
        "https://github.com/MicrosoftDocs/azure-docs/blob/05c762b2da0ffe5e3898955537e8479b34f79309/"
        "articles/machine-learning/classic/consume-web-services.md"
    ),
    "error-codes": (
        "Azure Machine Learning Studio (classic) REST API Error Codes (ms.date 11/16/2016): "
        "https://learn.microsoft.com/previous-versions/azure/machine-learning/classic/"
        "web-service-error-codes "
        "(source: https://github.com/MicrosoftDocs/azure-docs/blob/2fdc9edb4ba96400dcb41890d3c930847c308ffb/"
        "articles/machine-learning/classic/web-service-error-codes.md)"
    ),
    "apihelp": (
        "Request Response API Documentation for RiskModel [Predictive Exp.], the API help page the service "
        "generated (updated 01/10/2017): https://studio.azureml.net/apihelp/workspaces/"
        "0769e412b3944b9e8fed479bb8905c1e/webservices/f4ff0d3f6c23486690cec2308613aa22/endpoints/"
        "02880fc6ed4b439d9099e41c877735d7/score"
    ),
}

# --- request-response (RRS) -----------------------------------------------------------------------------
# consume-2016, "Sample Request".
RRS_SAMPLE_REQUEST: dict[str, Any] = {
    "Inputs": {"input1": {"ColumnNames": ["cog_speed"], "Values": [["0"], ["1"]]}},
    "GlobalParameters": {},
}
# consume-2016, "Sample Response". As published but for "].": the ColumnTypes list ended in a period, which
# made the sample invalid JSON. Its "type" reads "DataTable"; the responses users recorded from the
# service read "table" (what the scorer sends): the test compares the shape, not that word.
RRS_SAMPLE_RESPONSE: dict[str, Any] = {
    "Results": {
        "output1": {
            "type": "DataTable",
            "value": {"ColumnNames": ["cog_speed"], "ColumnTypes": ["Numeric"], "Values": [["0"], ["1"]]},
        }
    },
    "GlobalParameters": {},
}
# apihelp: "Note: You may omit the details parameter from the query string. This would cause ColumnTypes
# to be omitted from the output" (the request URI there ends in execute?api-version=2.0&details=true).
COLUMN_TYPES_ONLY_WITH_DETAILS = True
# consume-2020, the Python sample's `data` (records, every value a string) and the R sample's `req` (a
# table of strings), as the portal generated them for a service with columns column1..3 / Col1..3.
PORTAL_RECORDS_REQUEST: dict[str, Any] = {
    "Inputs": {"input1": [{"column1": "value1", "column2": "value2", "column3": "value3"}]},
    "GlobalParameters": {},
}
PORTAL_TABLE_REQUEST: dict[str, Any] = {
    "Inputs": {
        "input1": {
            "ColumnNames": ["Col1", "Col2", "Col3"],
            "Values": [["0", "value", "0"], ["0", "value", "0"]],
        }
    },
    "GlobalParameters": {},
}

# --- batch execution (BES) ------------------------------------------------------------------------------
# consume-2016, "1. Create a Batch Execution Job", "Sample Request": one input ("Input", not "Inputs"),
# no output override ("Outputs": null: classic then wrote to the workspace's storage account).
BES_CREATE_REQUEST: dict[str, Any] = {
    "Input": {
        "ConnectionString": (
            "DefaultEndpointsProtocol=https;AccountName=mystorageacct;AccountKey=mystorageacctKey"
        ),
        "RelativeLocation": "/mycontainer/mydatablob.csv",
        "BaseLocation": None,
        "SasBlobToken": None,
    },
    "Outputs": None,
    "GlobalParameters": None,
}
# "The response to the batch job creation API is the unique job ID": a JSON string.
BES_CREATE_RESPONSE = '"539d0bc2fde945b6ac986b851d0000f0"'
# "3. Get the Status of a Batch Execution Job", "Response Payload" and the values StatusCode can take (as
# the BES sample code the portal generated names them: enum BatchScoreStatusCode).
BES_STATUS_FIELDS = ("StatusCode", "Results", "Details")
BES_STATUS_CODES = ("NotStarted", "Running", "Failed", "Cancelled", "Finished")
# "Sample Response" of a finished job: each output as a blob reference (the "Status Code" key is spelled
# with a space in that sample only; the Response Payload above and the generated client say StatusCode).
BES_FINISHED_RESULT: dict[str, Any] = {
    "ConnectionString": None,
    "RelativeLocation": "outputs/dataOutput.csv",
    "BaseLocation": "https://mystorageaccount.blob.core.windows.net/",
    "SasBlobToken": (
        "?sv=2013-08-15&sr=b&sig=ABCD&st=2015-04-04T05%3A39%3A55Z&se=2015-04-05T05%3A44%3A55Z&sp=r"
    ),
}

# --- errors ---------------------------------------------------------------------------------------------
# error-codes: each class of error (the envelope's top-level "code") and its HTTP status.
ERROR_CLASSES: dict[str, int] = {
    "BadArgument": 400,
    "BadUserArgument": 400,
    "InvalidOperation": 400,
    "LibraryExecutionError": 400,
    "ModuleExecutionError": 400,
    "WebServicePackageError": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "RequestTimeout": 408,
    "Conflict": 409,
    "MemoryQuotaViolation": 413,
    "InternalError": 500,
    "InternalErrorSystemLowOnMemory": 500,
    "ModelPackageFormatError": 500,
    "WebServicePackageInternalError": 500,
    "InitializingContainers": 503,
    "ServiceUnavailable": 503,
    "GatewayTimeout": 504,
}
# error-codes: the error codes of the "details" section the scorer's cases correspond to, by class, with
# their user messages.
ERROR_DETAILS: dict[str, tuple[str, str]] = {
    "BadVersionCall": (
        "BadArgument",
        "Invalid version parameter was passed during the API call: {0}. Check the API help page for "
        "passing the correct version and try again.",
    ),
    "RequestBodyInvalid": (
        "BadArgument",
        "No request body provided or error in deserializing the request body.",
    ),
    "InvalidBlobConnectionString": (
        "BadArgument",
        "The connection string specified for one of the input/output blobs in invalid: {0}. Please correct "
        "this and try again.",
    ),
    "MissingOutputOverrideSpecification": (
        "BadArgument",
        "The request is missing the blob specification for output override {0}. Please specify a valid "
        "blob location with the request, or remove the output specification if no location override is "
        "desired.",
    ),
    "DuplicateInputInBatchCall": (
        "BadArgument",
        "The batch request is invalid. Cannot specify both single and multiple input at the same time. "
        "Remove one of these items from the request and try again.",
    ),
    "InputParseError": (
        "BadUserArgument",
        "Parsing of input vector failed.  Verify the input vector has the correct number of columns and "
        "data types.  Additional details: {0}.",
    ),
    "ScoreRequestUnauthorized": ("Unauthorized", "Invalid credentials provided."),
    "TooManyConcurrentRequests": ("ServiceUnavailable", "Too many concurrent requests sent."),
}


def shape(doc: Any) -> Any:
    """The structure of a JSON document: objects by their keys, arrays by the shapes of their items,
    values by their JSON type. Two documents with the same shape differ only in values."""
    if isinstance(doc, dict):
        return {k: shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return sorted({repr(shape(v)) for v in doc})
    return type(doc).__name__

#!/usr/bin/env python3
"""Check the Genesys Cloud simulator against the official Python SDK (purecloudplatformclientv2).

The SDK is generated from the Platform API swagger, so its models are the reference for
response shapes. Every call goes through the SDK (login included); for each response the raw
JSON is walked against the SDK model's `attribute_map` / `swagger_types` (nested models,
`list[...]`, `dict(...)`), and every field the model does not know, every value of the wrong
JSON type and every enum value outside the setter's `allowed_values` (compared exactly; the
SDK itself compares case-insensitively) is reported with its JSON path. The deserialized SDK
object is then searched for the SDK's "outdated_sdk_version" marker.

Usage: sdk_conformance.py --base URL --client-id ID --client-secret SECRET --ids JSON [--mode M]
       sdk_conformance.py --self-test
`--ids` is a JSON object written by tests/integration/tests/sdk_conformance.rs. Exit 0 when
every response conforms; the report goes to stdout either way.
"""

import argparse
import ast
import base64
import datetime
import hashlib
import inspect
import json
import re
import sys

import urllib3

import PureCloudPlatformClientV2 as gc
from PureCloudPlatformClientV2 import models
from PureCloudPlatformClientV2.rest import ApiException

OUTDATED = "outdated_sdk_version"
PRIMITIVES = {"str", "int", "float", "bool", "datetime", "date", "object", "LocalDateTime"}


class Checker:
    def __init__(self):
        self.problems = []
        self.lines = []
        self.fields = 0
        self._enum_cache = {}

    def problem(self, path, what):
        self.problems.append(f"{path}: {what}")

    # ---- raw JSON against the swagger types ------------------------------------------------

    def allowed_values(self, cls, attr):
        key = (cls, attr)
        if key not in self._enum_cache:
            values = None
            prop = getattr(cls, attr, None)
            if isinstance(prop, property) and prop.fset is not None:
                m = re.search(r"allowed_values = (\[.*?\])", inspect.getsource(prop.fset), re.S)
                if m:
                    values = ast.literal_eval(m.group(1))
            self._enum_cache[key] = values
        return self._enum_cache[key]

    def walk(self, value, typ, path):
        if value is None:
            return
        self.fields += 1
        m = re.fullmatch(r"list\[(.*)\]", typ)
        if m:
            if not isinstance(value, list):
                return self.problem(path, f"expected a JSON array ({typ}), got {type(value).__name__}")
            for i, v in enumerate(value):
                self.walk(v, m.group(1), f"{path}[{i}]")
            return
        m = re.fullmatch(r"dict\(([^,]*), ?(.*)\)", typ)
        if m:
            if not isinstance(value, dict):
                return self.problem(path, f"expected a JSON object ({typ}), got {type(value).__name__}")
            for k, v in value.items():
                self.walk(v, m.group(2), f"{path}.{k}")
            return
        if typ in PRIMITIVES:
            return self.primitive(value, typ, path)
        cls = getattr(models, typ, None)
        if cls is None:
            return self.problem(path, f"SDK has no model {typ}")
        if not isinstance(value, dict):
            return self.problem(path, f"expected a JSON object ({typ}), got {type(value).__name__}")
        inst = cls()
        by_json = {j: a for a, j in inst.attribute_map.items()}
        for k, v in value.items():
            attr = by_json.get(k)
            if attr is None:
                self.problem(f"{path}.{k}", f"field unknown to the SDK model {typ}")
                continue
            allowed = self.allowed_values(cls, attr)
            if allowed is not None and v is not None:
                for item in v if isinstance(v, list) else [v]:
                    if str(item) not in allowed:
                        self.problem(f"{path}.{k}", f"{item!r} is not one of {typ}.{attr} {allowed}")
            self.walk(v, inst.swagger_types[attr], f"{path}.{k}")

    def primitive(self, value, typ, path):
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "object": True,
        }.get(typ)
        if typ in ("datetime", "date", "LocalDateTime"):
            ok = isinstance(value, str)
            if ok:
                try:
                    from dateutil.parser import isoparse

                    isoparse(value)
                except ValueError:
                    ok = False
        if not ok:
            self.problem(path, f"{value!r} is not a valid {typ}")

    # ---- the deserialized SDK object ---------------------------------------------------------

    def outdated(self, obj, path):
        if obj is None:
            return
        if isinstance(obj, str):
            if obj == OUTDATED:
                self.problem(path, f"SDK marked the value {OUTDATED} (unknown enum value)")
            return
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                self.outdated(v, f"{path}[{i}]")
            return
        if isinstance(obj, dict):
            for k, v in obj.items():
                self.outdated(v, f"{path}.{k}")
            return
        if hasattr(obj, "swagger_types"):
            for attr in obj.swagger_types:
                self.outdated(getattr(obj, attr), f"{path}.{obj.attribute_map[attr]}")


class Run:
    def __init__(self, base, client_id, secret):
        gc.configuration.host = base
        self.api_client = gc.ApiClient(host=base)
        self.api_client.get_client_credentials_token(client_id, secret)
        self.rec = gc.RecordingApi(self.api_client)
        self.conv = gc.ConversationsApi(self.api_client)
        self.analytics = gc.AnalyticsApi(self.api_client)
        self.integrations = gc.IntegrationsApi(self.api_client)
        self.notifications = gc.NotificationsApi(self.api_client)
        self.routing = gc.RoutingApi(self.api_client)
        self.webdeployments = gc.WebDeploymentsApi(self.api_client)
        self.http = urllib3.PoolManager()
        self.c = Checker()

    def call(self, name, typ, fn, *args, **kwargs):
        """Call through the SDK and check the raw JSON and the deserialized object."""
        try:
            result = fn(*args, **kwargs)
        except ApiException as e:
            self.c.problem(name, f"HTTP {e.status}: {e.body}")
            return None, None
        except Exception as e:  # a deserialization failure is a finding too
            self.c.problem(name, f"SDK raised {type(e).__name__}: {e}")
            return None, None
        resp = self.api_client.last_response
        raw = resp.data or ""
        data = json.loads(raw) if raw.strip() else None
        before = len(self.c.problems)
        if typ is not None:
            self.c.walk(data, typ, name)
            self.c.outdated(result, name)
        verdict = "ok" if len(self.c.problems) == before else "MISMATCH"
        body = "empty body" if data is None else f"{len(raw)} bytes"
        self.c.lines.append(f"{verdict:8} {resp.status} {name} -> {typ} ({body})")
        return data, result

    def call_error(self, name, fn, *args, **kwargs):
        """A call expected to fail: its error body must be an ErrorBody."""
        try:
            fn(*args, **kwargs)
        except ApiException as e:
            before = len(self.c.problems)
            try:
                self.c.walk(json.loads(e.body), "ErrorBody", name)
            except ValueError:
                self.c.problem(name, f"error body is not JSON: {e.body!r}")
            verdict = "ok" if len(self.c.problems) == before else "MISMATCH"
            self.c.lines.append(f"{verdict:8} {e.status} {name} -> ErrorBody")
            return
        self.c.problem(name, "expected an HTTP error")

    def fetch(self, name, url):
        r = self.http.request("GET", url, preload_content=True)
        if r.status != 200 or not r.data:
            self.c.problem(name, f"GET of the signed URL gave {r.status} ({len(r.data)} bytes)")
        return r


def mk(cls, **attrs):
    """An SDK model instance (the generated constructors take no arguments)."""
    obj = cls()
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def media_uris(data):
    return (data or {}).get("mediaUris") or {}


def self_test():
    """The checker must catch what it is there to catch."""
    c = Checker()
    c.walk({
        "id": "r1", "fileState": "Available", "bogusField": 1, "outputSizeInBytes": "12",
        "archiveDate": "yesterday", "mediaUris": {"S": {"mediaUri": "u", "extra": True}},
        "annotations": [{"id": "a", "unknownInList": 0}],
    }, "Recording", "rec")
    want = ["rec.bogusField", "rec.fileState", "rec.outputSizeInBytes", "rec.archiveDate",
            "rec.mediaUris.S.extra", "rec.annotations[0].unknownInList"]
    r = models.Recording()
    r.file_state = "SOMETHING_NEW"
    c.outdated(r, "obj")
    want.append("obj.fileState")
    found = [p.split(":")[0] for p in c.problems]
    print("\n".join(c.problems))
    missing = [w for w in want if w not in found]
    extra = [f for f in found if f not in want]
    if missing or extra:
        print(f"self-test FAILED: missing {missing}, unexpected {extra}")
        return 1
    print(f"self-test ok: {len(want)} planted problems found")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--self-test", action="store_true", help="check the checker and exit")
    ap.add_argument("--base")
    ap.add_argument("--client-id")
    ap.add_argument("--client-secret")
    ap.add_argument("--ids", help="JSON object of conversation/recording ids")
    ap.add_argument("--mode", default="defaults", help="label of the simulator's behaviour")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not (a.base and a.client_id and a.client_secret and a.ids):
        ap.error("--base, --client-id, --client-secret and --ids are required")
    ids = json.loads(a.ids)
    run = Run(a.base, a.client_id, a.client_secret)
    R, C = run.rec, run.conv
    print(f"SDK {gc.__name__} (login {run.api_client.get_conf_url('login', a.base)}/oauth/token), "
          f"simulator mode {a.mode}")

    # Conversations and metadata.
    for cid in ids["conversations"]:
        run.call(f"get_conversation({cid})", "Conversation", C.get_conversation, cid)
        run.call(f"get_conversation_recordingmetadata({cid})", "list[RecordingMetadata]",
                 R.get_conversation_recordingmetadata, cid)
    for kind, (cid, rid) in ids["recordings"].items():
        run.call(f"get_conversation_recordingmetadata_recording_id({kind})", "RecordingMetadata",
                 R.get_conversation_recordingmetadata_recording_id, cid, rid)

    # Recordings in every format.
    for kind, (cid, rid) in ids["recordings"].items():
        if not kind.startswith("audio"):
            continue
        for f in ["WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3", "NONE"]:
            data, _ = run.call(f"get_conversation_recording({kind}, formatId={f})", "Recording",
                               R.get_conversation_recording, cid, rid, format_id=f)
            for key, m in media_uris(data).items():
                run.fetch(f"{kind} {f} mediaUris.{key}", m["mediaUri"])
        run.call(f"get_conversation_recording({kind}, mediaFormats=[MP3, WAV])", "Recording",
                 R.get_conversation_recording, cid, rid, media_formats=["MP3", "WAV"])
    for kind, kw in [
        ("chat", {"chat_format_id": "ZIP"}), ("chat", {"chat_format_id": "NONE"}),
        ("messaging", {"message_format_id": "ZIP"}), ("messaging", {"message_format_id": "NONE"}),
        ("email", {"email_format_id": "EML"}), ("email", {"email_format_id": "NONE"}),
        ("screen", {}), ("screen", {"format_id": "NONE"}),
        ("archived", {"format_id": "WAV"}), ("transcoding", {"format_id": "MP3"}),
        ("transcoding", {"format_id": "MP3"}),
    ]:
        cid, rid = ids["recordings"][kind]
        data, _ = run.call(f"get_conversation_recording({kind}, {kw})", "Recording",
                           R.get_conversation_recording, cid, rid, **kw)
        for key, m in media_uris(data).items():
            run.fetch(f"{kind} mediaUris.{key}", m["mediaUri"])
    cid, rid = ids["recordings"]["deleted"]
    run.call_error("get_conversation_recording(deleted)", R.get_conversation_recording, cid, rid)
    run.call_error("get_conversation(unknown)", C.get_conversation, "no-such-conversation")

    # Restore the archived recording by moving its archive date.
    cid, rid = ids["recordings"]["archived"]
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    data, _ = run.call("put_conversation_recording(archived, archiveDate=+30d)", "Recording",
                       R.put_conversation_recording, cid, rid, mk(gc.Recording, archive_date=future))
    if (data or {}).get("fileState") != "RESTORING":
        run.c.problem("put_conversation_recording", f"expected RESTORING, got {data}")
    state = None
    for i in range(5):
        data, _ = run.call(f"get_conversation_recordingmetadata_recording_id(restoring #{i})",
                           "RecordingMetadata", R.get_conversation_recordingmetadata_recording_id,
                           cid, rid)
        state = (data or {}).get("fileState")
        if state == "RESTORED":
            break
    if state != "RESTORED":
        run.c.problem("restore", f"never RESTORED (last {state})")
    run.call("get_conversation_recording(restored)", "Recording", R.get_conversation_recording,
             cid, rid, format_id="OGG_OPUS")

    # Batch download.
    items = [mk(gc.BatchDownloadRequest, conversation_id=c, recording_id=r)
             for (c, r) in ids["recordings"].values()]
    items.append(mk(gc.BatchDownloadRequest, conversation_id=ids["conversations"][0]))
    data, _ = run.call("post_recording_batchrequests", "BatchDownloadJobSubmissionResult",
                       R.post_recording_batchrequests,
                       mk(gc.BatchDownloadJobSubmission, batch_download_request_list=items))
    job = (data or {}).get("id")
    status = None
    for i in range(10):
        if job is None:
            break
        data, res = run.call(f"get_recording_batchrequest(#{i})", "BatchDownloadJobStatusResult",
                             R.get_recording_batchrequest, job)
        status = res.status if res else None
        if status == "Completed":
            errors = [r for r in data["results"] if r.get("errorMsg")]
            urls = [r for r in data["results"] if r.get("resultUrl")]
            if data["errorCount"] != len(errors) or not errors or not urls:
                run.c.problem("batch", f"{len(errors)} errors / {len(urls)} URLs: {data}")
            for r in urls:
                run.fetch(f"batch resultUrl {r['recordingId']}", r["resultUrl"])
            break
    if status != "Completed":
        run.c.problem("batch", f"job never Completed (last {status})")

    # Custom attributes and the external tag.
    cid = ids["custom"]
    body = mk(gc.CustomAttributesUpdateRequest, id="archive", schema_id=ids["schema_id"],
                                            custom_attributes={"s3Key": "k1", "bytes": 42})
    run.call("put_conversation_customattributes", "CustomAttributesIdResponse",
             C.put_conversation_customattributes, cid, body=body)
    run.call("get_conversation_customattributes", "CustomAttributesListing",
             C.get_conversation_customattributes, cid)
    run.call("patch_conversation_customattributes", None, C.patch_conversation_customattributes,
             cid, body=mk(gc.CustomAttributesPatchRequest, id="archive", version=1,
                                                        custom_attributes={"sha256": "ab"}))
    run.call("get_conversation_customattribute", "CustomAttributes",
             C.get_conversation_customattribute, cid, "archive")
    run.call("get_conversation_customattribute(pre-existing)", "CustomAttributes",
             C.get_conversation_customattribute, cid, ids["custom_id"])
    run.call("delete_conversation_customattribute", None, C.delete_conversation_customattribute,
             cid, "archive")
    run.call("put_conversation_tags", "str", C.put_conversation_tags, cid,
             mk(gc.ConversationTagsUpdate, external_tag="archive:s3://bucket/key"))
    run.call("get_conversation(tagged)", "Conversation", C.get_conversation, cid)

    # Analytics.
    now = datetime.datetime.now(datetime.timezone.utc)
    interval = f"{(now - datetime.timedelta(days=6)).isoformat()}/{now.isoformat()}"
    query = mk(gc.ConversationQuery, 
        interval=interval, order="asc", order_by="conversationStart",
        paging=mk(gc.PagingSpec, page_size=50, page_number=1),
        segment_filters=[mk(gc.SegmentDetailQueryFilter, type="and", predicates=[
            mk(gc.SegmentDetailQueryPredicate, type="dimension", dimension="recording", value="true")])])
    data, _ = run.call("post_analytics_conversations_details_query",
                       "AnalyticsConversationQueryResponse",
                       run.analytics.post_analytics_conversations_details_query, query)
    if not (data or {}).get("conversations"):
        run.c.problem("analytics", f"no conversations in {data}")

    # Integrations and media retention policies (gc-archive setup).
    I = run.integrations
    data, _ = run.call("post_integrations", "Integration", I.post_integrations,
                       body=mk(gc.CreateIntegrationRequest, name="gc-archive",
                               integration_type=mk(gc.IntegrationType, id="amazon-eventbridge-source")))
    iid = (data or {}).get("id")
    if iid:
        data, _ = run.call("get_integration_config_current", "IntegrationConfiguration",
                           I.get_integration_config_current, iid)
        cfg = mk(gc.IntegrationConfiguration, name="Amazon EventBridge Source",
                 version=(data or {}).get("version"), advanced={}, notes="gc-archive",
                 properties={"awsAccountId": "123456789012", "awsAccountRegion": "us-east-1",
                             "eventSourceSuffix": "gc-archive",
                             "eventFilter": ["v2.detail.events.conversation.{id}.customer.end"]})
        run.call("put_integration_config_current", "IntegrationConfiguration",
                 I.put_integration_config_current, iid, body=cfg)
        run.call("patch_integration", "Integration", I.patch_integration, iid,
                 body=mk(gc.Integration, intended_state="ENABLED"))
    run.call("get_integrations", "IntegrationEntityListing", I.get_integrations, page_size=100)
    run.call("get_recording_mediaretentionpolicies", "PolicyEntityListing",
             R.get_recording_mediaretentionpolicies, page_size=100)

    # Notifications API channels and subscriptions, routing queues (event-stream), and the
    # bodies its sockets carry.
    N = run.notifications
    data, _ = run.call("post_notifications_channels", "Channel", N.post_notifications_channels)
    channel = (data or {}).get("id")
    if channel:
        run.call("head_notifications_channel", None, N.head_notifications_channel, channel)
        topics = [mk(gc.ChannelTopic, id=f"v2.routing.queues.{q}.conversations") for q in ids["queues"]]
        data, _ = run.call("put_notifications_channel_subscriptions(ignoreErrors)",
                           "ChannelTopicEntityListing", N.put_notifications_channel_subscriptions,
                           channel, topics, ignore_errors=True)
        states = sorted((e.get("state"), e.get("id")) for e in (data or {}).get("entities", []))
        if [s for s, _ in states] != ["Permitted", "Rejected"]:
            run.c.problem("put_notifications_channel_subscriptions", f"states {states}")
        run.call_error("put_notifications_channel_subscriptions(rejected topic)",
                       N.put_notifications_channel_subscriptions, channel, topics)
        run.call("get_notifications_channel_subscriptions", "ChannelTopicEntityListing",
                 N.get_notifications_channel_subscriptions, channel)
        # A HEAD has no body: only the status says the channel is gone.
        try:
            N.head_notifications_channel("streaming-0-unknown")
            run.c.problem("head_notifications_channel(unknown)", "expected 404")
        except ApiException as e:
            if e.status != 404:
                run.c.problem("head_notifications_channel(unknown)", f"HTTP {e.status}, expected 404")
            run.c.lines.append(f"{'ok' if e.status == 404 else 'MISMATCH':8} {e.status} head_notifications_channel(unknown)")
    run.call("get_routing_queues", "QueueEntityListing", run.routing.get_routing_queues,
             page_size=100, page_number=1)
    # Message media: request an upload URL, upload with its headers, poll the status, send.
    m = ids["messaging"]
    mcid, mcomm = m["conversation"], m["communication"]
    media = b"%PDF-1.4 conformance " * 200
    req = mk(gc.UploadMediaRequest, file_name="conformance.pdf", content_length_bytes=len(media),
             content_md5=base64.b64encode(hashlib.md5(media).digest()).decode())
    data, _ = run.call("post_conversations_message_communication_messages_media_uploads",
                       "MessageMediaUploadData",
                       C.post_conversations_message_communication_messages_media_uploads,
                       mcid, mcomm, req)
    mid = (data or {}).get("id")
    if mid:
        get_media = C.get_conversations_message_communication_messages_media_media_id
        run.call("get_conversations_message_communication_messages_media_media_id(before upload)",
                 "MessageMediaData", get_media, mcid, mcomm, mid)
        r = run.http.request("PUT", data["uploadUrl"], body=media, headers=data["uploadHeaders"])
        if r.status != 200:
            run.c.problem("upload", f"PUT to uploadUrl gave {r.status}: {r.data[:200]!r}")
        status = None
        for i in range(5):
            got, _ = run.call(f"get_conversations_message_communication_messages_media_media_id(#{i})",
                              "MessageMediaData", get_media, mcid, mcomm, mid)
            status = (got or {}).get("status")
            if status != "uploading":
                break
        if status != "valid":
            run.c.problem("message media", f"never valid (last {status})")
        run.call("post_conversations_message_communication_messages(mediaIds)", "MessageData",
                 C.post_conversations_message_communication_messages, mcid, mcomm,
                 mk(gc.AdditionalMessage, media_ids=[mid]))
    run.call("post_conversations_message_communication_messages(textBody)", "MessageData",
             C.post_conversations_message_communication_messages, mcid, mcomm,
             mk(gc.AdditionalMessage, text_body="archived copy attached"))
    run.call_error("post_conversations_message_communication_messages(text and media)",
                   C.post_conversations_message_communication_messages, mcid, mcomm,
                   mk(gc.AdditionalMessage, text_body="x", media_ids=["no-such-media"]))
    run.call_error("post_conversations_message_communication_messages_media_uploads(unknown)",
                   C.post_conversations_message_communication_messages_media_uploads,
                   "no-such-conversation", mcomm, req)
    W = run.webdeployments
    run.call("get_webdeployments_deployment_configurations", "WebDeploymentActiveConfigurationOnDeployment",
             W.get_webdeployments_deployment_configurations, m["deployment"])
    run.call_error("get_webdeployments_deployment_configurations(unknown)",
                   W.get_webdeployments_deployment_configurations, "no-such-deployment")

    for model, bodies in ids["events"].items():
        for i, body in enumerate(bodies):
            before = len(run.c.problems)
            run.c.walk(body, model, f"socket event {model}[{i}]")
            verdict = "ok" if len(run.c.problems) == before else "MISMATCH"
            run.c.lines.append(f"{verdict:8} --- socket event body -> {model}")

    print("\n".join(run.c.lines))
    print(f"{len(run.c.lines)} responses, {run.c.fields} JSON values checked")
    if run.c.problems:
        print(f"\n{len(run.c.problems)} problem(s):")
        print("\n".join(f"  {p}" for p in run.c.problems))
        return 1
    print("all responses conform to the SDK models")
    return 0


if __name__ == "__main__":
    sys.exit(main())

import {
  create,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection as ReflectionV1,
  ServerReflectionRequestSchema as RequestV1,
  ServerReflectionResponseSchema as ResponseV1,
  type ServerReflectionRequest,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ReflectionV1Alpha,
  ServerReflectionRequestSchema as RequestV1Alpha,
  ServerReflectionResponseSchema as ResponseV1Alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * gRPC server reflection (v1 and the older v1alpha that many tools still
 * ask for), so `buf curl` can list services and call methods without a
 * local schema. Both versions share one implementation: their messages are
 * identical on the wire.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const index = new SchemaIndex([...services, ReflectionV1, ReflectionV1Alpha]);
  router.service(ReflectionV1, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield index.answer(req);
    },
  });
  router.service(ReflectionV1Alpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const answer = index.answer(fromBinary(RequestV1, toBinary(RequestV1Alpha, req)));
        yield fromBinary(ResponseV1Alpha, toBinary(ResponseV1, create(ResponseV1, answer)));
      }
    },
  });
}

type Answer = MessageInitShape<typeof ResponseV1>;

class SchemaIndex {
  private readonly files = new Map<string, DescFile>();
  private readonly fileOfSymbol = new Map<string, DescFile>();
  private readonly extensionsOf = new Map<string, DescExtension[]>();
  private readonly serviceNames: string[];

  constructor(services: readonly DescService[]) {
    this.serviceNames = services.map((s) => s.typeName);
    for (const s of services) this.addFile(s.file);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.name)) return;
    this.files.set(file.name, file);
    for (const dep of file.dependencies) this.addFile(dep);
    for (const s of file.services) {
      this.fileOfSymbol.set(s.typeName, file);
      for (const m of s.methods) this.fileOfSymbol.set(`${s.typeName}.${m.name}`, file);
    }
    for (const e of file.enums) this.fileOfSymbol.set(e.typeName, file);
    for (const x of file.extensions) this.addExtension(x, file);
    const visit = (m: DescMessage) => {
      this.fileOfSymbol.set(m.typeName, file);
      for (const f of m.fields) this.fileOfSymbol.set(`${m.typeName}.${f.name}`, file);
      for (const e of m.nestedEnums) this.fileOfSymbol.set(e.typeName, file);
      for (const x of m.nestedExtensions) this.addExtension(x, file);
      m.nestedMessages.forEach(visit);
    };
    file.messages.forEach(visit);
  }

  private addExtension(x: DescExtension, file: DescFile): void {
    this.fileOfSymbol.set(x.typeName, file);
    const list = this.extensionsOf.get(x.extendee.typeName) ?? [];
    list.push(x);
    this.extensionsOf.set(x.extendee.typeName, list);
  }

  answer(req: ServerReflectionRequest): Answer {
    const base = { validHost: req.host, originalRequest: req };
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: { service: this.serviceNames.map((name) => ({ name })) },
          },
        };
      case "fileByFilename":
        return this.filesAnswer(base, this.files.get(r.value), `file ${r.value}`);
      case "fileContainingSymbol":
        return this.filesAnswer(base, this.fileOfSymbol.get(r.value), `symbol ${r.value}`);
      case "fileContainingExtension": {
        const x = this.extensionsOf
          .get(r.value.containingType)
          ?.find((e) => e.number === r.value.extensionNumber);
        return this.filesAnswer(
          base,
          x?.file,
          `extension ${r.value.extensionNumber} of ${r.value.containingType}`,
        );
      }
      case "allExtensionNumbersOfType":
        return {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: {
              baseTypeName: r.value,
              extensionNumber: (this.extensionsOf.get(r.value) ?? []).map((x) => x.number),
            },
          },
        };
      default:
        return this.error(base, 12, "unsupported reflection request");
    }
  }

  /** The file and everything it imports, so one answer is enough to build the schema. */
  private filesAnswer(
    base: Pick<Answer, "validHost" | "originalRequest">,
    file: DescFile | undefined,
    what: string,
  ): Answer {
    if (!file) return this.error(base, 5, `${what} not found`);
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const add = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(add);
    };
    add(file);
    return {
      ...base,
      messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } },
    };
  }

  private error(
    base: Pick<Answer, "validHost" | "originalRequest">,
    code: number,
    message: string,
  ): Answer {
    return {
      ...base,
      messageResponse: { case: "errorResponse", value: { errorCode: code, errorMessage: message } },
    };
  }
}
